#!/usr/bin/env bash
# SFTP upload throughput: `bulkload serve` against OpenSSH's own sftp-server (sshd from Debian's
# openssh-server, on a loopback port, with a config of its own), measured in the same run with the
# same OpenSSH client and the same file.
#   bash bench/sftp.sh                 # 1 GiB upload + 200 concurrent small uploads
#   SIZE_MIB=256 CLIENTS=50 bash bench/sftp.sh
# Needs root for sshd (it logs in as the current user). Installs openssh-server when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-1024}
CLIENTS=${CLIENTS:-200}
PORT_BL=${PORT_BL:-22322}
PORT_SSHD=${PORT_SSHD:-22323}

if [ ! -x /usr/sbin/sshd ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq openssh-server
fi
cargo build --release -q
BIN=$PWD/target/release/bulkload
W=$(mktemp -d /tmp/bulkload-sftp-bench.XXXXXX)
cleanup() {
  [ -n "${BL_PID:-}" ] && kill "$BL_PID" 2>/dev/null || true
  [ -n "${SSHD_PID:-}" ] && kill "$SSHD_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

ssh-keygen -q -t ed25519 -N '' -f "$W/client_key"
ssh-keygen -q -t ed25519 -N '' -f "$W/sshd_host_key"
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > "$W/big.bin"
mkdir -p "$W/small" "$W/sshd_root"
for i in $(seq 1 "$CLIENTS"); do
  printf '[{"Mode":"create","ExternalId":"S%s"}]' "$i" > "$W/small/borrowers_$i.json"
done

# bulkload serve
cat > "$W/bulkload.toml" <<TOML
data_dir = "$W/data"
environments = ["sandbox"]
[schedule]
cron = "0 0 0 1 1 *"
[sftp]
listen = "127.0.0.1:$PORT_BL"
max_file_bytes = 17179869184
max_sessions_per_lender = 1000
[[lenders]]
id = "bench"
authorized_keys = "$W/client_key.pub"
[[lenders.divisions]]
thread_id = "0123456789abcdef0123456789abcdef"
system_name = "main"
editable_name = "Main"
TOML
"$BIN" serve --config "$W/bulkload.toml" 2> "$W/bulkload.log" &
BL_PID=$!

# OpenSSH sshd with its own config, on loopback
USER_NAME=$(id -un)
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
MaxStartups 1000:30:1000
MaxSessions 1000
Subsystem sftp /usr/lib/openssh/sftp-server
CONF
mkdir -p /run/sshd
/usr/sbin/sshd -D -f "$W/sshd_config" -E "$W/sshd.log" &
SSHD_PID=$!
sleep 1.5

SFTP=(sftp -q -i "$W/client_key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes)
upload() { # port user remote-dir file
  printf 'put %s %s/\n' "$4" "$3" | "${SFTP[@]}" -b - -P "$1" "$2@127.0.0.1" > /dev/null
}
now() { date +%s.%N; }
rate() { python3 -c "print(f'{$1/($3-$2):.1f}')"; }

# Best of ROUNDS uploads each, alternating which server goes first (page cache, noise).
ROUNDS=${ROUNDS:-2}
ssh_rate=0; bl_rate=0
best() { python3 -c "print(max($1, $2))"; }
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then order="sshd bl"; else order="bl sshd"; fi
  for who in $order; do
    a=$(now)
    if [ "$who" = sshd ]; then
      rm -f "$W/sshd_root/big.bin"; a=$(now)
      upload "$PORT_SSHD" "$USER_NAME" "$W/sshd_root" "$W/big.bin"; b=$(now)
      ssh_rate=$(best "$ssh_rate" "$(rate "$SIZE_MIB" "$a" "$b")")
    else
      rm -f "$W/data/lenders/bench/sandbox/import/pickup/big.bin"; a=$(now)
      upload "$PORT_BL" bench sandbox/import/pickup "$W/big.bin"; b=$(now)
      bl_rate=$(best "$bl_rate" "$(rate "$SIZE_MIB" "$a" "$b")")
    fi
  done
done
cmp "$W/big.bin" "$W/data/lenders/bench/sandbox/import/pickup/big.bin"
cmp "$W/big.bin" "$W/sshd_root/big.bin"

small() { # port user dir
  local pids=()
  for f in "$W"/small/*.json; do upload "$1" "$2" "$3" "$f" & pids+=($!); done
  local fail=0; for p in "${pids[@]}"; do wait "$p" || fail=$((fail + 1)); done
  echo "$fail"
}
t3=$(now); f_ssh=$(small "$PORT_SSHD" "$USER_NAME" "$W/sshd_root"); t4=$(now)
f_bl=$(small "$PORT_BL" bench sandbox/import/pickup); t5=$(now)
n_bl=$(ls "$W/data/lenders/bench/sandbox/import/pickup" | grep -c '^borrowers_' || true)

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"
echo "upload of ${SIZE_MIB} MiB (OpenSSH sftp client, loopback, best of $ROUNDS):"
echo "  OpenSSH sftp-server: ${ssh_rate} MiB/s"
echo "  bulkload serve:      ${bl_rate} MiB/s   ratio $(python3 -c "print(f'{$bl_rate/$ssh_rate:.2f}')") (target >= 0.80)"
echo "${CLIENTS} concurrent small uploads:"
echo "  OpenSSH sftp-server: $(python3 -c "print(f'{$t4-$t3:.2f}')") s, ${f_ssh} failed"
echo "  bulkload serve:      $(python3 -c "print(f'{$t5-$t4:.2f}')") s, ${f_bl} failed, ${n_bl}/${CLIENTS} files in pickup   ratio $(python3 -c "print(f'{($t4-$t3)/($t5-$t4):.2f}')") (OpenSSH time / bulkload time)"
