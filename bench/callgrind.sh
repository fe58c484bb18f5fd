#!/usr/bin/env bash
# Instruction counts (valgrind --tool=callgrind: exact, repeatable on a loaded machine) of one
# `bulkload run` per case, for before/after comparisons of a change (bench/README.md, issue 10).
#
#   bench/callgrind.sh <label> [bulkload binary]     default binary: target/release/bulkload
#
# Cases, on fixed files under target/cg/files (made once by bench/tools' gen): the employee-create
# file (EMP_N records, default 50000) on an empty store, and the phases of `gen bench` at N
# (default 30000): creates, updates, upserts, loans, relation adds, each after the previous ones.
# Prints "<label> <case> Collected : <Ir>" (the whole process: parser and store threads); the
# callgrind files stay in target/cg/<label>/ for callgrind_annotate.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
L=$1
BIN=$(realpath "${2:-$ROOT/target/release/bulkload}")
EMP_N=${EMP_N:-50000}
N=${N:-30000}
command -v valgrind >/dev/null || { echo "callgrind: valgrind is missing (apt-get install valgrind)" >&2; exit 1; }
export CARGO_TARGET_DIR=$ROOT/target
F=$ROOT/target/cg/files
if [ ! -f "$F/emp-$EMP_N.json" ] || [ ! -d "$F/bench-$N" ]; then
  (cd "$ROOT/bench/tools" && cargo build --release --quiet)
  mkdir -p "$F"
  "$ROOT/target/release/gen" employees "$F/emp-$EMP_N.json" "$EMP_N"
  "$ROOT/target/release/gen" bench "$F/bench-$N" "$N" 0
fi
W=$ROOT/target/cg/$L; rm -rf "$W"; mkdir -p "$W"
mk() { sed -e "s|^data_dir = .*|data_dir = \"$1\"|" -e 's|^environments = .*|environments = ["sandbox"]|' \
  "$ROOT/config.example.toml" > "$1.toml"; echo "$1.toml"; }
cg() { # <case> <config>
  valgrind --tool=callgrind --callgrind-out-file="$W/$1.cg" "$BIN" run --config "$2" --settle-seconds 0 > "$W/$1.log" 2> "$W/$1.vg"
  echo "$L $1 $(grep -o 'Collected : [0-9]*' "$W/$1.vg") ($(grep -o 'load [0-9]* .*failed' "$W/$1.log" | sed 's/ ->.*//' | tr '\n' ';'))"
}
D=$W/emp; mkdir -p "$D"; C=$(mk "$D")
"$BIN" run --config "$C" --settle-seconds 0 >/dev/null
cp "$F/emp-$EMP_N.json" "$D/lenders/demo/sandbox/import/pickup/employees_create.json"
cg employees "$C"
D=$W/phases; mkdir -p "$D"; C=$(mk "$D")
"$BIN" run --config "$C" --settle-seconds 0 >/dev/null
for p in 1-creates 2-updates 3-upserts 4-loans 5-relations; do
  cp "$F/bench-$N/$p"/*.json "$D/lenders/demo/sandbox/import/pickup/"
  cg "$p" "$C"
done
