#!/usr/bin/env bash
# Issue 8's floods at full size, against `bulkload serve` and OpenSSH's sshd (Debian's
# openssh-server, private config and host key, loopback port) in the same run:
#   1. 200 concurrent wrong passwords for a known user, from 20 addresses (127.0.0.10-29),
#      bans off (the worst case: every attempt reaches the password check);
#   2. 2000 idle sockets from one address that never send a byte;
#   3. 1100 connections from one address that finish the key exchange and stall in auth;
#   4. 10 clients looping on diffie-hellman-group18-sha512 handshakes.
# During each: the server's peak RSS (sshd: the whole process tree), and the latency of a
# legitimate key login + listing from another address (127.0.0.2), 5 times.
#   bash bench/flood.sh                  # all four, both servers
#   ONLY=passwords bash bench/flood.sh   # one flood
# Not in CI. Needs root for sshd (logs in as root with a key), python3 with paramiko.
# Everything talks to 127.0.0.0/8 only; each flood stops by itself after DURATION seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT_BL=${PORT_BL:-22422}
PORT_SSHD=${PORT_SSHD:-22423}
DURATION=${DURATION:-25}
ONLY=${ONLY:-}
OUT=${OUT:-bench/flood-last-run.txt}

if [ ! -x /usr/sbin/sshd ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq openssh-server
fi
python3 -c 'import paramiko' 2>/dev/null || pip install -q paramiko
ulimit -n 20000 2>/dev/null || true
cargo build --release -q
BIN=$PWD/target/release/bulkload
CLIENT=$PWD/tests/hardening_client.py
W=$(mktemp -d /tmp/bulkload-flood-bench.XXXXXX)
cleanup() {
  [ -n "${BL_PID:-}" ] && kill "$BL_PID" 2>/dev/null || true
  [ -n "${SSHD_PID:-}" ] && kill "$SSHD_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

ssh-keygen -q -t ed25519 -N '' -f "$W/client_key"
ssh-keygen -q -t ed25519 -N '' -f "$W/sshd_host_key"
HASH=$(printf 'demo' | "$BIN" passwd 2>/dev/null | tail -1)

cat > "$W/bulkload.toml" <<TOML
data_dir = "$W/data"
[sftp]
listen = "127.0.0.1:$PORT_BL"
max_login_failures = 1000000
[[lenders]]
id = "demo"
password_hash = "$HASH"
authorized_keys = "$W/client_key.pub"
[[lenders.divisions]]
thread_id = "0123456789abcdef0123456789abcdef"
system_name = "main"
editable_name = "Main Division"
TOML
cp "$W/client_key.pub" "$W/authorized_keys"
cat > "$W/sshd_config" <<CONF
Port $PORT_SSHD
ListenAddress 127.0.0.1
HostKey $W/sshd_host_key
PidFile $W/sshd.pid
AuthorizedKeysFile $W/authorized_keys
PermitRootLogin yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
CONF

start_bulkload() {
  "$BIN" serve --config "$W/bulkload.toml" 2>"$W/bulkload.log" &
  BL_PID=$!
  for _ in $(seq 100); do grep -q "listening for SFTP" "$W/bulkload.log" 2>/dev/null && return; sleep 0.1; done
  echo "bulkload did not start"; cat "$W/bulkload.log"; exit 1
}
start_sshd() {
  mkdir -p /run/sshd
  /usr/sbin/sshd -D -f "$W/sshd_config" -E "$W/sshd.log" &
  SSHD_PID=$!
  sleep 1
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# scenario name, flood arguments
SCENARIOS=(
  "passwords|--kind passwords --n 200 --sources 20"
  "idle|--kind idle --n 2000 --flood-source 127.0.0.1"
  "stall|--kind stall --n 1100 --flood-source 127.0.0.1"
  "dh18|--kind dh18 --n 10 --sources 10"
)

: > "$W/results.jsonl"
for entry in "${SCENARIOS[@]}"; do
  name=${entry%%|*}; flood=${entry#*|}
  [ -n "$ONLY" ] && [ "$ONLY" != "$name" ] && continue
  for server in bulkload sshd; do
    if [ $server = bulkload ]; then
      start_bulkload; pid=$BL_PID; port=$PORT_BL; user=demo; dir=/sandbox/import
    else
      start_sshd; pid=$SSHD_PID; port=$PORT_SSHD; user=root; dir=.
    fi
    # shellcheck disable=SC2086
    line=$(python3 "$CLIENT" --port $port --pid $pid --user $user --list-dir $dir \
      --legit-key "$W/client_key" --duration "$DURATION" --warmup 5 --logins 5 $flood flood \
      2>>"$W/client.log" || echo '{"error": "client failed"}')
    echo "{\"server\": \"$server\", \"scenario\": \"$name\", \"result\": $line}" | tee -a "$W/results.jsonl"
    if [ $server = sshd ] && ! kill -0 "$pid" 2>/dev/null; then echo "sshd died:"; cat "$W/sshd.log"; fi
    stop "$pid"
    sleep 2
  done
done

python3 - "$W/results.jsonl" <<'PY' | tee "$OUT"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| flood | server | peak RSS (MiB) | legit logins ok | legit login s (max / median) | flood outcomes |")
print("|---|---|---|---|---|---|")
for r in rows:
    x = r["result"]
    secs = sorted(x.get("legit_seconds", []))
    rss = x.get("max_tree_rss_kib" if r["server"] == "sshd" else "hwm_kib", 0) / 1024
    ok = f'{len(secs)}/{len(secs) + len(x.get("legit_errors", []))}'
    lat = f"{max(secs):.2f} / {secs[len(secs)//2]:.2f}" if secs else "none"
    print(f'| {r["scenario"]} | {r["server"]} | {rss:.0f} | {ok} | {lat} | {x.get("counts", {})} |')
PY
