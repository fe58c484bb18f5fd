#!/usr/bin/env bash
# One command: builds release, generates pickup files, times a bulkload pass per phase against the
# raw limit (a minimal rusqlite prepared-statement loop, and the sqlite3 shell's json_each) on the
# same schema, pragmas and machine, then measures peak RSS of a pass over a small and a big file.
#
#   bench/run.sh                         full size: N=1000000, EMP_N=1000000, MEM_SMALL=100M, MEM_BIG=1G
#   N=20000 EMP_N=20000 MEM_SMALL=10M MEM_BIG=20M bench/run.sh    a quick run (a few minutes)
#
#   EMP_N=30000 CASES=employees bench/run.sh   only the employee-create case, smaller
#   CASES=memory MEM_SMALL=100M MEM_BIG=1G bench/run.sh   only the memory check
#
# Env: CASES (any of "phases employees memory", default all three), N (records per phase),
# EMP_N (records of the employee-create case, default 1000000: ~320 MB), SYNC (FULL|NORMAL, default FULL), CACHE_MIB (default 64, as the
# example config), MEM_SMALL / MEM_BIG (file sizes, K/M/G), BENCH_DIR (scratch, default
# target/bench; needs ~3x MEM_BIG of free disk), MEM_CACHE_MIB (the memory runs' cache, default
# CACHE_MIB), BAD_PCT (bad records in the throughput files,
# default 0 so all sides insert the same rows; the memory files always carry 5%), REPEAT (rounds
# of the phases and employee-create cases, default 1: each round times the pass, the raw loop and
# json_each one after the other from fresh stores, and the table shows each side's median over
# the rounds, so a slow moment of the machine hits one round of one side, not the verdict).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-1000000}
SYNC=${SYNC:-FULL}
CACHE_MIB=${CACHE_MIB:-64}
EMP_N=${EMP_N:-1000000}
CASES=${CASES:-phases employees memory}
MEM_SMALL=${MEM_SMALL:-100M}
MEM_BIG=${MEM_BIG:-1G}
BAD_PCT=${BAD_PCT:-0}
MEM_CACHE_MIB=${MEM_CACHE_MIB:-$CACHE_MIB}
REPEAT=${REPEAT:-1}
W=${BENCH_DIR:-$ROOT/target/bench}
export CARGO_TARGET_DIR=$ROOT/target
T=$CARGO_TARGET_DIR/release
TIME=/usr/bin/time
[ -x $TIME ] || { echo "bench: /usr/bin/time is missing (apt-get install time)" >&2; exit 1; }
command -v sqlite3 >/dev/null || { echo "bench: sqlite3 shell is missing (apt-get install sqlite3)" >&2; exit 1; }

echo "== build (release)"
(cd "$ROOT" && cargo build --release --quiet)
(cd "$ROOT/bench/tools" && cargo build --release --quiet)

rm -rf "$W"; mkdir -p "$W"
has() { case " $CASES " in *" $1 "*) return 0;; *) return 1;; esac; }

sync_lc=$(echo "$SYNC" | tr 'A-Z' 'a-z')
mkconfig() { # <data_dir> -> config path
  sed -e "s|^data_dir = .*|data_dir = \"$1\"|" \
      -e 's|^environments = .*|environments = ["sandbox"]|' \
      -e "s|^synchronous = .*|synchronous = \"$sync_lc\"|" \
      -e "s|^cache_mib = .*|cache_mib = $CACHE_MIB|" \
      "$ROOT/config.example.toml" > "$1.toml"
  echo "$1.toml"
}
now() { date +%s.%N; }
# The median of its arguments (numbers).
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
if has phases; then
echo "== generate N=$N (bad records: $BAD_PCT%)"
$T/gen bench "$W/files" "$N" "$BAD_PCT"
PHASES="1-creates 2-updates 3-upserts 4-loans 5-relations"
declare -A PASS RAW JE REC RSS PASS_ALL RAW_ALL JE_ALL
for round in $(seq 1 "$REPEAT"); do
if [ "$REPEAT" -gt 1 ]; then echo "== round $round of $REPEAT"; fi

echo "== bulkload pass, phase by phase (WAL, synchronous=$SYNC, cache ${CACHE_MIB} MiB)"
D=$W/pass; rm -rf "$D" "$D.toml"; mkdir -p "$D"; CFG=$(mkconfig "$D")
$T/bulkload run --config "$CFG" --settle-seconds 0 >/dev/null   # creates the tree and the store
PICK=$D/lenders/demo/sandbox/import/pickup
for p in $PHASES; do
  cp "$W/files/$p"/*.json "$PICK/"
  $TIME -f "%e %M" -o "$W/time.$p" $T/bulkload run --config "$CFG" --settle-seconds 0 > "$W/pass.$p.log"
  read -r secs rss < "$W/time.$p"
  PASS_ALL[$p]="${PASS_ALL[$p]:-} $secs"; RSS[$p]=$rss
  fails=$(grep -o '[0-9]* failed' "$W/pass.$p.log" | awk '{s+=$1} END {print s+0}')
  echo "   $p: ${secs}s, peak RSS ${rss} KiB, failed records: $fails"
done

echo "== raw prepared-statement loop (same rows, schema, pragmas)"
$T/raw "$W/raw.sqlite3" "$N" "$SYNC" "$CACHE_MIB" | while read -r _ ph n secs; do echo "$ph $n $secs"; done > "$W/raw.out"
map_phase() { case $1 in creates) echo 1-creates;; updates) echo 2-updates;; upserts) echo 3-upserts;; loans) echo 4-loans;; relations) echo 5-relations;; esac; }
while read -r ph n secs; do k=$(map_phase "$ph"); RAW_ALL[$k]="${RAW_ALL[$k]:-} $secs"; REC[$k]=$n; echo "   $k: ${secs}s ($n rows)"; done < "$W/raw.out"

echo "== sqlite3 shell, json_each over the same files"
DB=$W/je.sqlite3; rm -f "$DB"*
sqlite3 "$DB" "PRAGMA journal_mode=WAL;" >/dev/null
# The store's migrations in order (v2 adds, among others, the accounts (lender, email_key) index;
# v6 writes the accounts' kind check as comparisons; v3-v5 touch no table written here).
sqlite3 "$DB" < "$ROOT/src/store/sqlite/schema_v1.sql"
sqlite3 "$DB" < "$ROOT/src/store/sqlite/schema_v2.sql"
sqlite3 "$DB" < "$ROOT/src/store/sqlite/schema_v6.sql"   # the accounts' kind check as comparisons
sqlite3 "$DB" "PRAGMA user_version = 6; INSERT INTO bulk_loads (lender, pickup_name, claim, started_at, ended_at, stamp, state, number) VALUES ('demo','x','x','','','','finished',1);"
PRAGMAS="PRAGMA synchronous=$SYNC; PRAGMA foreign_keys=ON; PRAGMA cache_size=-$((CACHE_MIB*1024)); PRAGMA temp_store=MEMORY;"
F=$W/files
acct_cols="lender, kind, thread_id, external_id, email, email_key, first_name, last_name, address1, city, state_code, zip_code, phone_primary, created_load, updated_load"
acct_vals() { echo "'demo', '$1', lower(hex(randomblob(16))), j.value->>'ExternalId', j.value->>'Email', lower(j.value->>'Email'), j.value->>'FirstName', j.value->>'LastName', j.value->>'Address1', j.value->>'City', j.value->>'StateCode', j.value->>'ZipCode', j.value->>'PhonePrimary', 1, 1"; }
upd_set_x="email = excluded.email, email_key = excluded.email_key, first_name = excluded.first_name, last_name = excluded.last_name, address1 = excluded.address1, city = excluded.city, state_code = excluded.state_code, zip_code = excluded.zip_code, phone_primary = excluded.phone_primary, updated_load = 1"
declare -A SQL
SQL[1-creates]="INSERT INTO accounts ($acct_cols) SELECT $(acct_vals employee) FROM json_each(readfile('$F/1-creates/employees_bench.json')) j;
INSERT INTO account_divisions SELECT a.id, d.value FROM json_each(readfile('$F/1-creates/employees_bench.json')) j CROSS JOIN json_each(j.value->'DivisionThreadIds') d CROSS JOIN accounts a WHERE a.lender = 'demo' AND a.external_id = j.value->>'ExternalId';
INSERT INTO accounts ($acct_cols) SELECT $(acct_vals borrower) FROM json_each(readfile('$F/1-creates/borrowers_bench.json')) j;"
SQL[2-updates]="INSERT INTO accounts ($acct_cols) SELECT $(acct_vals employee) FROM json_each(readfile('$F/2-updates/employees_bench.json')) j WHERE true ON CONFLICT (lender, external_id) WHERE external_id IS NOT NULL DO UPDATE SET $upd_set_x;
INSERT INTO accounts ($acct_cols) SELECT $(acct_vals borrower) FROM json_each(readfile('$F/2-updates/borrowers_bench.json')) j WHERE true ON CONFLICT (lender, external_id) WHERE external_id IS NOT NULL DO UPDATE SET $upd_set_x;"
SQL[3-upserts]="INSERT INTO accounts ($acct_cols) SELECT $(acct_vals borrower) FROM json_each(readfile('$F/3-upserts/borrowers_upsert.json')) j WHERE true
 ON CONFLICT (lender, external_id) WHERE external_id IS NOT NULL DO UPDATE SET $upd_set_x;"
SQL[4-loans]="INSERT INTO loans (lender, thread_id, loan_number, division_thread_id, address1, city, state_code, zip_code, loan_type_id, closing_date, total_loan_amount, loan_purpose_id, created_load, updated_load)
 SELECT 'demo', lower(hex(randomblob(16))), j.value->>'LoanNumber', j.value->>'DivisionThreadId', j.value->>'Address1', j.value->>'City', j.value->>'StateCode', j.value->>'ZipCode', j.value->>'LoanTypeId', j.value->>'ClosingDate', CAST(j.value->>'TotalLoanAmount' AS TEXT), j.value->>'LoanPurposeId', 1, 1 FROM json_each(readfile('$F/4-loans/loans_bench.json')) j;"
SQL[5-relations]="INSERT OR IGNORE INTO loan_borrowers SELECT l.id, a.id FROM json_each(readfile('$F/5-relations/loan_borrowers_bench.json')) j CROSS JOIN loans l CROSS JOIN accounts a WHERE l.lender = 'demo' AND l.loan_number = j.value->>'Loan_Number' AND a.lender = 'demo' AND a.external_id = j.value->>'Account_ExternalId';
INSERT OR IGNORE INTO loan_positions SELECT l.id, a.id, j.value->>'PositionName' FROM json_each(readfile('$F/5-relations/loan_positions_bench.json')) j CROSS JOIN loans l CROSS JOIN accounts a WHERE l.lender = 'demo' AND l.loan_number = j.value->>'Loan_Number' AND a.lender = 'demo' AND a.external_id = j.value->>'Account_ExternalId';"
for p in $PHASES; do
  t0=$(now)
  printf '%s\nBEGIN;\n%s\nCOMMIT;\n' "$PRAGMAS" "${SQL[$p]}" | sqlite3 -bail "$DB" >/dev/null
  t1=$(now); je=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')
  JE_ALL[$p]="${JE_ALL[$p]:-} $je"
  echo "   $p: ${je}s"
done
echo "   row check: $(sqlite3 "$DB" 'SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM loans), (SELECT count(*) FROM loan_borrowers)+(SELECT count(*) FROM loan_positions)') (accounts, loans, relations) vs pass: $(sqlite3 "$D/db/sandbox.sqlite3" 'SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM loans), (SELECT count(*) FROM loan_borrowers)+(SELECT count(*) FROM loan_positions)')"
done
for p in $PHASES; do
  PASS[$p]=$(median ${PASS_ALL[$p]}); RAW[$p]=$(median ${RAW_ALL[$p]}); JE[$p]=$(median ${JE_ALL[$p]})
  if [ "$REPEAT" -gt 1 ]; then echo "   $p rounds: pass${PASS_ALL[$p]}; raw${RAW_ALL[$p]}; json_each${JE_ALL[$p]} (s)"; fi
done
fi

# The employee-create case (issue 10): one file of EMP_N full employee creates (every account
# field, random ExternalIds and emails), the lender's one division by default; the pass, the raw
# loop and json_each into fresh stores with the same schema, cache and durability.
if has employees; then
echo "== employee-create case: EMP_N=$EMP_N"
EF=$W/emp/employees_create.json
$T/gen employees "$EF" "$EMP_N"
EP_ALL=""; ER_ALL=""; EJ_ALL=""
for round in $(seq 1 "$REPEAT"); do
if [ "$REPEAT" -gt 1 ]; then echo "   round $round of $REPEAT"; fi
E=$W/emp-pass; rm -rf "$E" "$E.toml" "$W/emp-raw.sqlite3"*; mkdir -p "$E"; CFG=$(mkconfig "$E")
$T/bulkload run --config "$CFG" --settle-seconds 0 >/dev/null
cp "$EF" "$E/lenders/demo/sandbox/import/pickup/"
$TIME -v -o "$W/timev.emp" $T/bulkload run --config "$CFG" --settle-seconds 0 > "$W/emp.log"
EMP_RSS=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$W/timev.emp")
EMP_PASS=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; print s}' "$W/timev.emp")
EP_ALL="$EP_ALL $EMP_PASS"
EMP_CPU=$(awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {print u+s}' "$W/timev.emp")
echo "   pass: ${EMP_PASS}s (cpu ${EMP_CPU}s), peak RSS $EMP_RSS KiB, $(grep -o 'load [0-9]* .*failed' "$W/emp.log" | sed 's/ ->.*//')"
read -r _ _ _ EMP_RAW < <($T/raw "$W/emp-raw.sqlite3" "$EMP_N" "$SYNC" "$CACHE_MIB" employees)
echo "   raw loop: ${EMP_RAW}s"
ER_ALL="$ER_ALL $EMP_RAW"
DB=$W/emp-je.sqlite3; rm -f "$DB"*
sqlite3 "$DB" "PRAGMA journal_mode=WAL;" >/dev/null
sqlite3 "$DB" < "$ROOT/src/store/sqlite/schema_v1.sql"
sqlite3 "$DB" < "$ROOT/src/store/sqlite/schema_v2.sql"
sqlite3 "$DB" < "$ROOT/src/store/sqlite/schema_v6.sql"   # the accounts' kind check as comparisons
sqlite3 "$DB" "PRAGMA user_version = 6; INSERT INTO bulk_loads (lender, pickup_name, claim, started_at, ended_at, stamp, state, number) VALUES ('demo','x','x','','','','finished',1);"
PRAGMAS="PRAGMA synchronous=$SYNC; PRAGMA foreign_keys=ON; PRAGMA cache_size=-$((CACHE_MIB*1024)); PRAGMA temp_store=MEMORY;"
emp_sql="INSERT INTO accounts (lender, kind, thread_id, external_id, email, email_key, first_name, last_name, middle_init, name_suffix, address1, address2, city, state_code, zip_code, phone_primary, phone_secondary, created_load, updated_load)
 SELECT 'demo', 'employee', lower(hex(randomblob(16))), j.value->>'ExternalId', j.value->>'Email', lower(j.value->>'Email'), j.value->>'FirstName', j.value->>'LastName', j.value->>'MiddleInit', j.value->>'NameSuffix', j.value->>'Address1', j.value->>'Address2', j.value->>'City', j.value->>'StateCode', j.value->>'ZipCode', j.value->>'PhonePrimary', j.value->>'PhoneSecondary', 1, 1 FROM json_each(readfile('$EF')) j;
INSERT INTO account_divisions SELECT id, '0123456789abcdef0123456789abcdef' FROM accounts WHERE lender = 'demo' AND kind = 'employee';"
t0=$(now)
printf '%s\nBEGIN;\n%s\nCOMMIT;\n' "$PRAGMAS" "$emp_sql" | $TIME -v -o "$W/timev.emp-je" sqlite3 -bail "$DB" >/dev/null
t1=$(now); EMP_JE=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')
EMP_JE_RSS=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$W/timev.emp-je")
echo "   json_each: ${EMP_JE}s, peak RSS $EMP_JE_RSS KiB"
EJ_ALL="$EJ_ALL $EMP_JE"
echo "   row check (accounts, divisions): pass $(sqlite3 "$E/db/sandbox.sqlite3" 'SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM account_divisions)'), raw $(sqlite3 "$W/emp-raw.sqlite3" 'SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM account_divisions)'), json_each $(sqlite3 "$DB" 'SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM account_divisions)')"
done
EMP_PASS=$(median $EP_ALL); EMP_RAW=$(median $ER_ALL); EMP_JE=$(median $EJ_ALL)
if [ "$REPEAT" -gt 1 ]; then echo "   employee-create rounds: pass$EP_ALL; raw$ER_ALL; json_each$EJ_ALL (s)"; fi
rm -rf "$E" "$W/emp-raw.sqlite3"* "$DB"*
fi

# Memory: peak RSS of a pass over a MEM_SMALL and a MEM_BIG borrowers file (targets: < 100 MiB,
# flat within 10% from 100 MB to 1 GB).
if has memory; then
echo "== memory: one pass over a $MEM_SMALL and a $MEM_BIG borrowers file (5% bad records, cache ${MEM_CACHE_MIB} MiB)"
declare -A MEM
CACHE_MIB=$MEM_CACHE_MIB
for size in "$MEM_SMALL" "$MEM_BIG"; do
  M=$W/mem-$size; mkdir -p "$M"; CFG=$(mkconfig "$M")
  $T/bulkload run --config "$CFG" --settle-seconds 0 >/dev/null
  $T/gen size "$M/lenders/demo/sandbox/import/pickup/borrowers_mem.json" "$size" 5
  $TIME -v -o "$W/timev.$size" $T/bulkload run --config "$CFG" --settle-seconds 0 > "$W/mem.$size.log"
  MEM[$size]=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$W/timev.$size")
  el=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$W/timev.$size")
  echo "   $size: peak RSS ${MEM[$size]} KiB, wall $el, $(grep -o 'load [0-9]* .*failed' "$W/mem.$size.log" | sed 's/ ->.*//')"
  rm -rf "$M"
done
fi

echo
if has phases; then
echo "== results (records/s, each side the median of $REPEAT round(s); targets: pass/raw >= 0.80, pass/json_each >= 1.00; RSS = peak of the pass)"
printf '%-12s %10s %12s %12s %12s %10s %10s %10s\n' phase records pass/s raw-loop/s json_each/s pass/raw pass/je "RSS MiB"
for p in $PHASES; do
  awk -v p="$p" -v n="${REC[$p]}" -v a="${PASS[$p]}" -v b="${RAW[$p]}" -v c="${JE[$p]}" -v r="${RSS[$p]}" 'BEGIN {
    pa = n / a; rb = n / b; jc = n / c;
    printf "%-12s %10d %12.0f %12.0f %12.0f %10.2f %10.2f %10.1f\n", p, n, pa, rb, jc, pa / rb, pa / jc, r / 1024 }'
done
fi
if has employees; then
awk -v n="$EMP_N" -v a="$EMP_PASS" -v b="$EMP_RAW" -v c="$EMP_JE" -v r="$EMP_RSS" -v jr="$EMP_JE_RSS" -v cpu="$EMP_CPU" 'BEGIN {
  pa = n / a; rb = n / b; jc = n / c;
  printf "%-12s %10d %12.0f %12.0f %12.0f %10.2f %10.2f %10.1f\n", "employees", n, pa, rb, jc, pa / rb, pa / jc, r / 1024
  printf "employee-create: pass %.2fs wall, %.2fs cpu (%.2f cores), peak RSS %.1f MiB; json_each peak RSS %.1f MiB\n", a, cpu, cpu / a, r / 1024, jr / 1024 }'
fi
if has memory; then
awk -v c="$MEM_CACHE_MIB" -v s="${MEM[$MEM_SMALL]}" -v b="${MEM[$MEM_BIG]}" -v ss="$MEM_SMALL" -v bs="$MEM_BIG" 'BEGIN {
  r = b / s; ok = (r <= 1.10 && r >= 1 / 1.10 && b < 100 * 1024 && s < 100 * 1024) ? "met" : "NOT met";
  printf "peak RSS: %s file %.1f MiB, %s file %.1f MiB, ratio %.2f (cache %s MiB; targets: within 10%% and < 100 MiB: %s)\n", ss, s/1024, bs, b/1024, r, c, ok }'
fi
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%Y-%m-%dT%H:%MZ), synchronous=$SYNC"
