#!/usr/bin/env bash
# Results in seconds (issue 9), in one run:
#  1. Latency: upload close -> result file readable over SFTP, with `on_upload = true` and every
#     other setting at its default (settle_seconds = 30, on_upload_delay_seconds = 0.5,
#     on_upload_max_delay_seconds = 2), over N uploads of lender "measured" while lender "busy"
#     uploads a file every 100 ms. Targets: p50 < 2 s, p99 < 3 s.
#  2. Throughput: a SIZE_MIB upload with the OpenSSH sftp client to `bulkload serve` and to
#     OpenSSH's own sftp-server (sshd on a loopback port, set up as bench/sftp.sh does),
#     alternating which goes first, ROUNDS rounds; every round's ratio is printed with the spread.
#     Target: >= 1.0.
#
#   bash bench/latency.sh                    # N=100, SIZE_MIB=1024, ROUNDS=4
#   N=20 SIZE_MIB=128 ROUNDS=2 bash bench/latency.sh
# Needs python3 with paramiko (the measuring clients) and root for sshd (installs
# openssh-server when missing). Never part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100}
SIZE_MIB=${SIZE_MIB:-1024}
ROUNDS=${ROUNDS:-4}
PORT_BL=${PORT_BL:-22422}
PORT_SSHD=${PORT_SSHD:-22423}

if [ ! -x /usr/sbin/sshd ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq openssh-server
fi
python3 -c 'import paramiko' 2>/dev/null || { echo "needs python3 with paramiko (pip install paramiko)"; exit 2; }
cargo build --release -q
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/bulkload
W=$(mktemp -d /tmp/bulkload-latency.XXXXXX)
cleanup() {
  [ -n "${BL_PID:-}" ] && kill "$BL_PID" 2>/dev/null || true
  [ -n "${SSHD_PID:-}" ] && kill "$SSHD_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

ssh-keygen -q -t ed25519 -N '' -f "$W/client_key"
ssh-keygen -q -t ed25519 -N '' -f "$W/sshd_host_key"

# Defaults everywhere but the data folder, the port and on_upload.
cat > "$W/bulkload.toml" <<TOML
data_dir = "$W/data"
[schedule]
on_upload = true
[sftp]
listen = "127.0.0.1:$PORT_BL"
[[lenders]]
id = "measured"
authorized_keys = "$W/client_key.pub"
[[lenders.divisions]]
thread_id = "0123456789abcdef0123456789abcdef"
system_name = "main"
editable_name = "Main"
[[lenders]]
id = "busy"
authorized_keys = "$W/client_key.pub"
[[lenders.divisions]]
thread_id = "0123456789abcdef0123456789abcde0"
system_name = "main"
editable_name = "Main"
TOML
"$BIN" serve --config "$W/bulkload.toml" 2> "$W/bulkload.log" &
BL_PID=$!
for _ in $(seq 1 100); do grep -q "pass complete" "$W/bulkload.log" && break; sleep 0.1; done

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u '+%F %H:%M') UTC, commit $(git rev-parse --short HEAD)"
echo "1. upload close -> result readable over SFTP (on_upload = true, other settings default)"
python3 - "$PORT_BL" "$W/client_key" "$N" <<'PY'
import paramiko, sys, threading, time, statistics
port, key, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])

def connect(user):
    t = paramiko.Transport(("127.0.0.1", port))
    t.connect(username=user, pkey=paramiko.Ed25519Key.from_private_key_file(key))
    return t, paramiko.SFTPClient.from_transport(t)

def employee(tag):
    return ('[{"Mode":"create","ExternalId":"%s","FirstName":"A","LastName":"B","Email":"%s@example.com"}]' % (tag, tag)).encode()

stop = threading.Event()
busy_count = [0]
def busy():
    t, s = connect("busy")
    i = 0
    next_at = time.monotonic()
    while not stop.is_set():
        with s.open("/sandbox/import/pickup/employees_busy%05d.json" % i, "wb") as f:
            f.write(employee("busy%05d" % i))
        i += 1
        busy_count[0] = i
        next_at += 0.1
        time.sleep(max(0, next_at - time.monotonic()))
    t.close()

th = threading.Thread(target=busy, daemon=True)
th.start()
time.sleep(2)  # the busy lender is in full swing
t, s = connect("measured")
lat = []
for i in range(n):
    name = "employees_m%04d" % i
    with s.open("/sandbox/import/pickup/%s.json" % name, "wb") as f:
        f.write(employee("m%04d" % i))
    t0 = time.monotonic()  # the close has been answered
    while True:
        found = [x for x in s.listdir("/sandbox/import/results") if x.startswith(name + ".")]
        if found:
            with s.open("/sandbox/import/results/" + found[0], "rb") as f:
                body = f.read()
            if b'"NumCreateSuccess": 1' in body:
                break
        if time.monotonic() - t0 > 60:
            sys.exit("no result for %s after 60 s" % name)
        time.sleep(0.02)
    lat.append(time.monotonic() - t0)
stop.set()
th.join()
lat.sort()
p = lambda q: lat[min(len(lat) - 1, int(round(q * (len(lat) - 1))))]
print("  %d uploads while lender busy uploaded %d files (every 100 ms)" % (n, busy_count[0]))
print("  p50 %.2f s (target < 2)   p90 %.2f s   p99 %.2f s (target < 3)   max %.2f s   mean %.2f s"
      % (p(0.5), p(0.9), p(0.99), lat[-1], statistics.mean(lat)))
t.close()
PY
# Every busy upload imported once as well.
sleep 3
busy_results=$(ls "$W/data/lenders/busy/sandbox/import/results" | wc -l)
busy_left=$(ls "$W/data/lenders/busy/sandbox/import/pickup" | wc -l)
echo "  busy lender: $busy_results results, $busy_left files left in pickup"

# OpenSSH sshd with its own config, on loopback (as bench/sftp.sh).
USER_NAME=$(id -un)
mkdir -p "$W/sshd_root"
cat > "$W/sshd_config" <<CONF
Port $PORT_SSHD
ListenAddress 127.0.0.1
HostKey $W/sshd_host_key
AuthorizedKeysFile $W/client_key.pub
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PidFile $W/sshd.pid
Subsystem sftp /usr/lib/openssh/sftp-server
CONF
mkdir -p /run/sshd
/usr/sbin/sshd -D -f "$W/sshd_config" -E "$W/sshd.log" &
SSHD_PID=$!
sleep 1.5

head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > "$W/big.bin"
SFTP=(sftp -q -i "$W/client_key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes)
upload() { # port user remote-path
  printf 'put %s %s\n' "$W/big.bin" "$3" | "${SFTP[@]}" -b - -P "$1" "$2@127.0.0.1" > /dev/null
}
now() { date +%s.%N; }
echo "2. ${SIZE_MIB} MiB upload, OpenSSH sftp client, loopback, $ROUNDS alternating rounds"
ratios=()
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then order="sshd bl"; else order="bl sshd"; fi
  for who in $order; do
    if [ "$who" = sshd ]; then
      rm -f "$W/sshd_root/big.bin"; a=$(now)
      upload "$PORT_SSHD" "$USER_NAME" "$W/sshd_root/big.bin"; b=$(now)
      s_rate=$(python3 -c "print(f'{$SIZE_MIB/($b-$a):.1f}')")
    else
      # An ignored name (.part): no pass touches it.
      rm -f "$W/data/lenders/measured/sandbox/import/pickup/big.bin.part"; a=$(now)
      upload "$PORT_BL" measured sandbox/import/pickup/big.bin.part; b=$(now)
      b_rate=$(python3 -c "print(f'{$SIZE_MIB/($b-$a):.1f}')")
    fi
  done
  ratio=$(python3 -c "print(f'{$b_rate/$s_rate:.2f}')")
  ratios+=("$ratio")
  echo "  round $r ($order first): sftp-server $s_rate MiB/s, bulkload $b_rate MiB/s, ratio $ratio"
done
cmp "$W/big.bin" "$W/data/lenders/measured/sandbox/import/pickup/big.bin.part"
cmp "$W/big.bin" "$W/sshd_root/big.bin"
python3 -c "
import statistics; r=[float(x) for x in '${ratios[*]}'.split()]
print(f'  ratio bulkload / sftp-server: min {min(r):.2f}  median {statistics.median(r):.2f}  max {max(r):.2f} (target >= 1.0)')"
