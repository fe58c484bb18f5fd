#!/usr/bin/env bash
# The PostgreSQL store's bench (issue 14): a bulkload pass per phase on PostgreSQL against two raw
# baselines on the same database in the same run (a prepared-statement loop through psql, one
# round trip per row in one transaction, and COPY), then the throughput with 1, 2 and 4 lenders
# applying at once (parallel_lenders = 4).
#
#   bench/pg.sh                      N=100000
#   N=10000 bench/pg.sh              a quick run
#
# Env: N (records per phase), BULKLOAD_BENCH_PG_URL (a server whose user may create databases;
# default: a throwaway cluster in BENCH_DIR, started as the postgres user when run as root),
# BENCH_DIR (scratch, default target/bench-pg).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-100000}
W=${BENCH_DIR:-$ROOT/target/bench-pg}
export CARGO_TARGET_DIR=$ROOT/target
T=$CARGO_TARGET_DIR/release
command -v psql >/dev/null || { echo "bench: psql is missing (apt-get install postgresql-client)" >&2; exit 1; }

echo "== build (release)"
(cd "$ROOT" && cargo build --release --quiet)
(cd "$ROOT/bench/tools" && cargo build --release --quiet)
rm -rf "$W"; mkdir -p "$W"; chmod 755 "$W"

if [ -z "${BULKLOAD_BENCH_PG_URL:-}" ]; then
  pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$pgbin" ] || pgbin=$(dirname "$(command -v initdb)")
  pgrun() { "$@"; }
  mkdir -p "$W/pg"
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "$W/pg"; pgrun() { runuser -u postgres -- "$@"; }; fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  pgrun "$pgbin/initdb" -D "$W/pg/db" -A trust -U bulkload -E UTF8 --locale=C >/dev/null
  # Durable commits (fsync on), as a real server.
  pgrun "$pgbin/pg_ctl" -D "$W/pg/db" -l "$W/pg/log" -w start -o "-p $port -k $W/pg -c listen_addresses=127.0.0.1 -c shared_preload_libraries=pg_stat_statements" >/dev/null
  trap 'pgrun "$pgbin/pg_ctl" -D "$W/pg/db" -m fast -w stop >/dev/null 2>&1 || true' EXIT
  BULKLOAD_BENCH_PG_URL="postgres://bulkload@127.0.0.1:$port/postgres"
fi
BASE=${BULKLOAD_BENCH_PG_URL%/*}
psql -q "$BULKLOAD_BENCH_PG_URL" -c "DROP DATABASE IF EXISTS bench" -c "CREATE DATABASE bench"
URL=$BASE/bench
# Statements per record (pg_stat_statements; a server of one's own, BULKLOAD_BENCH_PG_URL, may
# not have it loaded: then "n/a").
STATS=1
psql -q "$URL" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" 2>/dev/null && psql -qAt "$URL" -c "SELECT 1 FROM pg_stat_statements LIMIT 1" >/dev/null 2>&1 || STATS=0
stmt_reset() { [ "$STATS" = 1 ] && psql -qAt "$URL" -c "SELECT pg_stat_statements_reset()" >/dev/null || true; }
stmt_count() { # statements run in database bench since the reset
  if [ "$STATS" = 1 ]; then
    psql -qAt "$URL" -c "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = 'bench' AND s.query NOT LIKE '%pg_stat_statements%'"
  else echo 0; fi
}

echo "== generate N=$N"
$T/gen bench "$W/files" "$N" 0

mkconfig() { # <data_dir> <lenders> <parallel> -> config path
  {
    echo "data_dir = \"$1\""
    echo 'environments = ["sandbox"]'
    echo '[store]'
    echo "url = \"$URL\""
    echo "parallel_lenders = $3"
    for i in $(seq 1 "$2"); do
      [ "$i" -eq 1 ] && id=demo || id=demo$i
      printf '[[lenders]]\nid = "%s"\n[[lenders.divisions]]\nthread_id = "%032x"\nsystem_name = "main"\neditable_name = "Main"\npositions = ["AEA"]\n' "$id" "$i"
    done
  } > "$1.toml"
  echo "$1.toml"
}
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", b-a}'; }
declare -A PASS RAW COPYT REC STMT
PHASES="creates upserts"
file_of() { case $1 in creates) echo "$W/files/1-creates/borrowers_bench.json";; upserts) echo "$W/files/3-upserts/borrowers_upsert.json";; esac; }

echo "== bulkload pass on PostgreSQL, phase by phase (borrowers)"
D=$W/pass; mkdir -p "$D"; CFG=$(mkconfig "$D" 1 1)
$T/bulkload run --config "$CFG" --settle-seconds 0 >/dev/null   # tree and schema
PICK=$D/lenders/demo/sandbox/import/pickup
for p in $PHASES; do
  cp "$(file_of $p)" "$PICK/"
  stmt_reset
  t0=$(now); $T/bulkload run --config "$CFG" --settle-seconds 0 > "$W/pass.$p.log"; t1=$(now)
  PASS[$p]=$(secs "$t0" "$t1")
  STMT[$p]=$(stmt_count)
  REC[$p]=$(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))))" "$(file_of $p)")
  echo "   $p: ${PASS[$p]}s, $(grep -o '[0-9]* failed' "$W/pass.$p.log" | head -1), ${STMT[$p]} statements"
  if [ "$STATS" = 1 ]; then # where the server's time went: the five costliest statements
    psql -qAt -F ' | ' "$URL" -c "SELECT calls, round(total_exec_time::numeric, 1) || ' ms', left(regexp_replace(query, '\s+', ' ', 'g'), 90)
      FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = 'bench' AND query NOT LIKE '%pg_stat_statements%'
      ORDER BY total_exec_time DESC LIMIT 5" | sed 's/^/      /'
  fi
done

if [ "$STATS" = 1 ]; then
  echo "== statements per record of other types (the same pass folder, one run each)"
  for f in 1-creates/employees_bench.json 4-loans/loans_bench.json 5-relations/loan_borrowers_bench.json; do
    # The generated files name another division than the bench lender's.
    sed 's/0123456789abcdef0123456789abcdef/00000000000000000000000000000001/g' "$W/files/$f" > "$PICK/$(basename "$f")"
    n=$(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))))" "$W/files/$f")
    stmt_reset
    t0=$(now); $T/bulkload run --config "$CFG" --settle-seconds 0 > "$W/pass.other.log"; t1=$(now)
    st=$(stmt_count)
    echo "   $(basename "$f"): $n records in $(secs "$t0" "$t1")s, $(grep -o '[0-9]* failed' "$W/pass.other.log" | head -1), $st statements ($(awk -v s="$st" -v n="$n" 'BEGIN{printf "%.2f", s / n}') per record)"
  done
fi

echo "== raw baselines on the same database (schema raw, the same migrations)"
psql -q "$URL" -c "CREATE SCHEMA raw"
for f in "$ROOT"/src/store/postgres/schema_v*.sql; do PGOPTIONS=-csearch_path=raw psql -q -v ON_ERROR_STOP=1 "$URL" -f "$f"; done
PGOPTIONS=-csearch_path=raw psql -q "$URL" -c "INSERT INTO bulk_loads (lender, pickup_name, claim, started_at, ended_at, stamp, state, number) VALUES ('demo','x','x','','','','finished',1)"
# Rows as the pass writes them: (external_id, email, email_key, first, last, address1, city, state, zip, phone).
python3 - "$W" "$(file_of creates)" "$(file_of upserts)" <<'PY'
import json, sys
w, files = sys.argv[1], {"creates": sys.argv[2], "upserts": sys.argv[3]}
cols = ["ExternalId", "Email", None, "FirstName", "LastName", "Address1", "City", "StateCode", "ZipCode", "PhonePrimary"]
def row(r):
    out = []
    for c in cols:
        v = r.get(c) if c else (r.get("Email") or "").lower() or None
        out.append(v)
    return out
def lit(v):
    return "NULL" if v is None else "'" + str(v).replace("'", "''") + "'"
def cp(v):
    if v is None: return "\\N"
    return str(v).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
ins = ("INSERT INTO accounts (lender, kind, thread_id, external_id, email, email_key, first_name, last_name, "
       "address1, city, state_code, zip_code, phone_primary, created_load, updated_load) VALUES "
       "('demo', 'borrower', md5(random()::text), $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, 1)")
upd = (" ON CONFLICT (lender, external_id) WHERE external_id IS NOT NULL DO UPDATE SET email = excluded.email, "
       "email_key = excluded.email_key, first_name = excluded.first_name, last_name = excluded.last_name, "
       "address1 = excluded.address1, city = excluded.city, state_code = excluded.state_code, "
       "zip_code = excluded.zip_code, phone_primary = excluded.phone_primary, updated_load = 1")
for phase, f in files.items():
    recs = json.load(open(f))
    with open(f"{w}/raw.{phase}.sql", "w") as o:
        o.write("SET search_path TO raw;\nBEGIN;\nPREPARE ins(text,text,text,text,text,text,text,text,text,text) AS " + ins + (upd if phase == "upserts" else "") + ";\n")
        for r in recs:
            o.write("EXECUTE ins(" + ", ".join(lit(v) for v in row(r)) + ");\n")
        o.write("COMMIT;\n")
    with open(f"{w}/copy.{phase}.tsv", "w") as o:
        for r in recs:
            o.write("\t".join(cp(v) for v in row(r)) + "\n")
PY
for p in $PHASES; do
  t0=$(now); psql -q -v ON_ERROR_STOP=1 "$URL" -f "$W/raw.$p.sql" >/dev/null; t1=$(now)
  RAW[$p]=$(secs "$t0" "$t1")
  echo "   prepared loop $p: ${RAW[$p]}s"
done
# COPY: creates into a fresh table of the same shape; upserts through a staging table.
t0=$(now)
PGOPTIONS=-csearch_path=raw psql -q -v ON_ERROR_STOP=1 "$URL" <<SQL
BEGIN;
CREATE TABLE accounts_copy (LIKE accounts INCLUDING ALL);
CREATE TEMP TABLE stage (external_id text, email text, email_key text, first_name text, last_name text, address1 text, city text, state_code text, zip_code text, phone_primary text);
\copy stage FROM '$W/copy.creates.tsv'
INSERT INTO accounts_copy (lender, kind, thread_id, external_id, email, email_key, first_name, last_name, address1, city, state_code, zip_code, phone_primary, created_load, updated_load)
  SELECT 'demo', 'borrower', md5(random()::text), s.* , 1, 1 FROM stage s;
COMMIT;
SQL
t1=$(now); COPYT[creates]=$(secs "$t0" "$t1"); echo "   COPY creates: ${COPYT[creates]}s"
t0=$(now)
PGOPTIONS=-csearch_path=raw psql -q -v ON_ERROR_STOP=1 "$URL" <<SQL
BEGIN;
CREATE TEMP TABLE stage (external_id text, email text, email_key text, first_name text, last_name text, address1 text, city text, state_code text, zip_code text, phone_primary text);
\copy stage FROM '$W/copy.upserts.tsv'
INSERT INTO accounts_copy (lender, kind, thread_id, external_id, email, email_key, first_name, last_name, address1, city, state_code, zip_code, phone_primary, created_load, updated_load)
  SELECT 'demo', 'borrower', md5(random()::text), s.*, 1, 1 FROM stage s
  ON CONFLICT (lender, external_id) WHERE external_id IS NOT NULL DO UPDATE SET email = excluded.email, email_key = excluded.email_key, first_name = excluded.first_name, updated_load = 1;
COMMIT;
SQL
t1=$(now); COPYT[upserts]=$(secs "$t0" "$t1"); echo "   COPY upserts: ${COPYT[upserts]}s"

echo "== parallel lenders: the creates file for 1, 2 and 4 lenders at once (parallel_lenders = 4)"
# Each lender its own copy with its own email addresses (b7+demo2@...): emails are unique across
# lenders, so with one shared file a lender's load waits on the other's email claims (until it
# commits) and the lenders run one after the other.
for i in 1 2 3 4; do
  [ "$i" -eq 1 ] && id=demo || id=demo$i
  python3 - "$(file_of creates)" "$W/files/creates.$id.json" "$id" <<'PY'
import json, sys
recs = json.load(open(sys.argv[1]))
for r in recs:
    if r.get("Email"):
        local, _, domain = r["Email"].partition("@")
        r["Email"] = f"{local}+{sys.argv[3]}@{domain}"
json.dump(recs, open(sys.argv[2], "w"))
PY
done
declare -A PAR
pg_cpu() { # CPU seconds of every postgres process so far (clock ticks of /proc/<pid>/stat)
  local tck; tck=$(getconf CLK_TCK)
  for p in $(pgrep -x postgres); do awk '{print $14 + $15 + $16 + $17}' "/proc/$p/stat" 2>/dev/null; done \
    | awk -v t="$tck" '{s += $1} END {printf "%.2f", s / t}'
}
for k in 1 2 4; do
  psql -q "$BASE/postgres" -c "DROP DATABASE IF EXISTS bench_par" -c "CREATE DATABASE bench_par"
  URL_SAVE=$URL; URL=$BASE/bench_par
  P=$W/par$k; mkdir -p "$P"; CFG=$(mkconfig "$P" "$k" 4); URL=$URL_SAVE
  $T/bulkload run --config "$CFG" --settle-seconds 0 >/dev/null
  for i in $(seq 1 "$k"); do
    [ "$i" -eq 1 ] && id=demo || id=demo$i
    cp "$W/files/creates.$id.json" "$P/lenders/$id/sandbox/import/pickup/borrowers_bench.json"
  done
  # The CPU seconds bulkload and the server spent (user + system), to tell waiting from working.
  pgcpu0=$(pg_cpu)
  t0=$(now); cpu=$( { TIMEFORMAT='%U %S'; time $T/bulkload run --config "$CFG" --settle-seconds 0 > "$W/par.$k.log"; } 2>&1 | awk '{print $1 + $2}'); t1=$(now)
  pgcpu=$(awk -v a="$pgcpu0" -v b="$(pg_cpu)" 'BEGIN{printf "%.1f", b - a}')
  PAR[$k]=$(secs "$t0" "$t1")
  made=$(psql -qAt "$BASE/bench_par" -c "SELECT string_agg(lender || '=' || n, ' ' ORDER BY lender) FROM (SELECT lender, count(*) n FROM bulkload_sandbox.accounts GROUP BY lender) c")
  echo "   $k lender(s): ${PAR[$k]}s (CPU: bulkload ${cpu}s, server ${pgcpu}s); accounts created: $made"
done

echo
echo "== results (records/s; ratio = pass / prepared loop; target >= 0.50)"
printf '%-10s %9s %10s %12s %10s %10s %10s %10s\n' phase records pass/s loop/s copy/s pass/loop pass/copy stmt/rec
for p in $PHASES; do
  awk -v p="$p" -v n="${REC[$p]}" -v a="${PASS[$p]}" -v b="${RAW[$p]}" -v c="${COPYT[$p]}" -v st="${STMT[$p]}" 'BEGIN {
    pa = n / a; rb = n / b; cc = n / c;
    printf "%-10s %9d %10.0f %12.0f %10.0f %10.2f %10.2f %10s\n", p, n, pa, rb, cc, pa / rb, pa / cc, (st > 0 ? sprintf("%.2f", st / n) : "n/a") }'
done
n=${REC[creates]}
awk -v n="$n" -v a="${PAR[1]}" -v b="${PAR[2]}" -v c="${PAR[4]}" 'BEGIN {
  printf "lenders at once: 1: %.0f rec/s, 2: %.0f rec/s (x%.2f), 4: %.0f rec/s (x%.2f)\n", n/a, 2*n/b, (2*n/b)/(n/a), 4*n/c, (4*n/c)/(n/a) }'
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%Y-%m-%dT%H:%MZ)"
