#!/usr/bin/env python3
"""Attack and client scenarios against `bulkload serve` (or any SSH server), for
tests/hardening.rs and bench/flood.sh. Needs paramiko. Every scenario is bounded in count and
time and talks only to the loopback address it is given. Prints one JSON object on stdout.

  hardening_client.py --port P SCENARIO [options]
"""
import argparse
import json
import os
import socket
import sys
import threading
import time

try:
    import paramiko
except ImportError:  # the Rust test checks this exit code and says what is missing
    print("paramiko is not installed (pip install paramiko)", file=sys.stderr)
    sys.exit(77)


def connect_sock(args, source=None, timeout=20):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if source:
        s.bind((source, 0))
    s.connect((args.host, args.port))
    return s


def transport(args, source=None, timeout=20):
    t = paramiko.Transport(connect_sock(args, source, timeout))
    t.banner_timeout = timeout
    t.start_client(timeout=timeout)
    return t


def legit_login(args, source):
    """One full login + listing; returns seconds, or raises."""
    t0 = time.monotonic()
    t = transport(args, source)
    try:
        if args.legit_key:
            key = paramiko.Ed25519Key.from_private_key_file(args.legit_key)
            t.auth_publickey(args.user, key)
        else:
            t.auth_password(args.user, args.password)
        sftp = paramiko.SFTPClient.from_transport(t)
        sftp.listdir(args.list_dir)
        sftp.close()
    finally:
        t.close()
    return time.monotonic() - t0


def rss_sampler(pid, stop, out):
    """Samples VmRSS / VmHWM / Threads of `pid` (and its children's sum for sshd) until stop."""
    def read(p):
        vals = {}
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    k, _, v = line.partition(":")
                    if k in ("VmRSS", "VmHWM", "Threads"):
                        vals[k] = int(v.split()[0])
        except OSError:
            pass
        return vals

    def children(p):
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                return [int(x) for x in f.read().split()]
        except OSError:
            return []

    while not stop.is_set():
        if pid:
            own = read(pid)
            out["max_rss_kib"] = max(out.get("max_rss_kib", 0), own.get("VmRSS", 0))
            out["hwm_kib"] = max(out.get("hwm_kib", 0), own.get("VmHWM", 0))
            out["max_threads"] = max(out.get("max_threads", 0), own.get("Threads", 0))
            # sshd forks a process per connection: count the whole tree's RSS too.
            total = own.get("VmRSS", 0)
            kids = children(pid)
            for c in kids:
                total += read(c).get("VmRSS", 0)
                for g in children(c):
                    total += read(g).get("VmRSS", 0)
            out["max_tree_rss_kib"] = max(out.get("max_tree_rss_kib", 0), total)
            out["max_processes"] = max(out.get("max_processes", 0), 1 + len(kids))
        stop.wait(0.05)


def flood_worker(args, kind, i, stop, counts, lock):
    source = args.flood_source or f"127.0.0.{10 + i % args.sources}"
    deadline = time.monotonic() + args.duration
    while not stop.is_set() and time.monotonic() < deadline:
        what = "error"
        try:
            if kind == "passwords":
                t = transport(args, source, timeout=30)
                try:
                    t.auth_password(args.user, "wrong-password-%d" % i)
                    what = "accepted"
                except paramiko.AuthenticationException:
                    what = "rejected"
                finally:
                    t.close()
            elif kind == "idle":
                s = connect_sock(args, source, timeout=5)
                # Never sends a byte; holds until the server closes or the flood ends.
                s.settimeout(0.2)
                what = "held"
                while not stop.is_set() and time.monotonic() < deadline:
                    try:
                        if s.recv(4096) == b"":
                            what = "closed"
                            break
                    except socket.timeout:
                        continue
                s.close()
            elif kind == "dh18":
                # One handshake asking for the 8192-bit group only (expensive for the server).
                import subprocess
                subprocess.run(
                    ["ssh", "-o", "KexAlgorithms=diffie-hellman-group18-sha512", "-o", "BatchMode=yes",
                     "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                     "-o", "LogLevel=QUIET", "-o", "ConnectTimeout=20", "-b", source,
                     "-p", str(args.port), "nobody@" + args.host, "true"],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, timeout=60)
                what = "handshake"
            elif kind == "stall":
                t = transport(args, source, timeout=30)
                # Key exchange done (a connection the server left waiting has no remote version).
                what = "held" if t.remote_version else "waiting"
                while not stop.is_set() and time.monotonic() < deadline and t.is_active():
                    stop.wait(0.2)
                if not t.is_active():
                    what = "closed"
                t.close()
        except Exception:
            what = "error"
        with lock:
            counts[what] = counts.get(what, 0) + 1
        if what == "error" or kind in ("idle", "stall"):
            # Reconnect after being closed, like a real flood, but not in a hot loop.
            stop.wait(1.0 if kind in ("idle", "stall") else 0.05)
        elif kind == "dh18":
            stop.wait(0.1)


def scenario_flood(args):
    stop = threading.Event()
    sample_stop = threading.Event()
    stats = {}
    sampler = threading.Thread(target=rss_sampler, args=(args.pid, sample_stop, stats))
    sampler.start()
    counts, lock = {}, threading.Lock()
    threads = [
        threading.Thread(target=flood_worker, args=(args, args.kind, i, stop, counts, lock))
        for i in range(args.n)
    ]
    t_start = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(args.warmup)
    logins = []
    errors = []
    for _ in range(args.logins):
        # In a process of its own: the flood's threads must not slow the legitimate client.
        cmd = [sys.executable, os.path.abspath(__file__), "--host", args.host,
               "--port", str(args.port), "--user", args.user, "--password", args.password,
               "--legit-source", args.legit_source, "--list-dir", args.list_dir]
        if args.legit_key:
            cmd += ["--legit-key", args.legit_key]
        import subprocess
        r = subprocess.run(cmd + ["login"], capture_output=True, text=True, timeout=120)
        try:
            logins.append(json.loads(r.stdout.strip().splitlines()[-1])["seconds"])
        except Exception:  # a failed legitimate login is a result, not a crash
            errors.append((r.stderr.strip().splitlines() or ["no output"])[-1][:200])
        time.sleep(0.2)
    # Answer times of a wrong password for an unknown and for a known user, under the flood.
    probes = {}
    if args.probe_users:
        import subprocess
        for user, source in (("nobody-such", "127.0.0.3"), (args.user, "127.0.0.4")):
            r = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--host", args.host,
                 "--port", str(args.port), "--user", user, "--legit-source", source, "probe"],
                capture_output=True, text=True, timeout=120)
            try:
                probes[user] = json.loads(r.stdout.strip().splitlines()[-1])["seconds"]
            except Exception:
                probes[user] = None
    stop.set()
    for t in threads:
        t.join(timeout=60)
    sample_stop.set()
    sampler.join()
    print(json.dumps({
        "kind": args.kind,
        "n": args.n,
        "seconds": round(time.monotonic() - t_start, 2),
        "legit_seconds": [round(x, 3) for x in logins],
        "legit_errors": errors,
        "counts": counts,
        "probe_seconds": probes,
        **stats,
    }))


def scenario_login(args):
    print(json.dumps({"seconds": legit_login(args, args.legit_source)}))


def scenario_probe(args):
    """One wrong password for --user; prints the answer time (from the auth request)."""
    t = transport(args, args.legit_source)
    t0 = time.monotonic()
    try:
        t.auth_password(args.user, "certainly-wrong")
        ok = True
    except paramiko.AuthenticationException:
        ok = False
    print(json.dumps({"accepted": ok, "seconds": round(time.monotonic() - t0, 3)}))
    t.close()


def scenario_grace(args):
    """Completes the key exchange, then only sends SSH_MSG_IGNORE every 0.5 s."""
    t0 = time.monotonic()
    t = transport(args, args.legit_source)
    while t.is_active() and time.monotonic() - t0 < args.duration:
        try:
            t.send_ignore(16)
        except Exception:
            break
        time.sleep(0.5)
    print(json.dumps({"closed": not t.is_active(), "seconds": round(time.monotonic() - t0, 2)}))
    t.close()


def sftp_session(args):
    t = transport(args, args.legit_source)
    if args.legit_key:
        t.auth_publickey(args.user, paramiko.Ed25519Key.from_private_key_file(args.legit_key))
    else:
        t.auth_password(args.user, args.password)
    return t, paramiko.SFTPClient.from_transport(t)


def scenario_names(args):
    """Tries names that must be refused; reports each error message."""
    t, sftp = sftp_session(args)
    base = "/sandbox/import/pickup/"
    out = {}
    cases = {
        "non_utf8": base.encode() + b"bad\xff\xfe.json",
        "bidi": base + "invoice\u202enosj.exe",
        "lrm": base + "a\u200eb.json",
        "control": base + "a\x07b.json",
        "long": base + "a" * 210,
        "limit": base + "borrowers_" + "b" * (209 - len("borrowers_.json")) + ".json",
    }
    for name, path in cases.items():
        try:
            with sftp.open(path, "wb") as f:
                f.write(b"[]")
            out[name] = "ok"
        except IOError as e:
            out[name] = str(e)
    # A rename to a too-long name.
    try:
        sftp.rename(cases["limit"], base + "c" * 210)
        out["rename_long"] = "ok"
    except IOError as e:
        out["rename_long"] = str(e)
    sftp.close()
    t.close()
    print(json.dumps(out))


def scenario_race(args):
    """Two sessions rename the same file to two names at once, `tries` times."""
    t1, s1 = sftp_session(args)
    t2, s2 = sftp_session(args)
    pickup_real = args.pickup
    base = "/sandbox/import/pickup/"
    both = neither = one = 0
    for i in range(args.tries):
        src = f"race_{i}.txt"
        with open(os.path.join(pickup_real, src), "w") as f:
            f.write("x")
        barrier = threading.Barrier(2)
        res = [None, None]

        def go(k, sftp, dst):
            barrier.wait()
            try:
                sftp.rename(base + src, base + dst)
                res[k] = "ok"
            except IOError as e:
                res[k] = str(e)

        a = threading.Thread(target=go, args=(0, s1, f"race_{i}.b"))
        b = threading.Thread(target=go, args=(1, s2, f"race_{i}.c"))
        a.start(); b.start(); a.join(); b.join()
        names = [n for n in (src, f"race_{i}.b", f"race_{i}.c")
                 if os.path.exists(os.path.join(pickup_real, n))]
        if len(names) == 1 and names[0] != src:
            one += 1
        elif len(names) == 0:
            neither += 1
        else:
            both += 1
    cross = "ok"
    try:
        with s1.open(base + "cross.json", "wb") as f:
            f.write(b"[]")
        s1.rename(base + "cross.json", "/production/import/pickup/cross.json")
    except IOError as e:
        cross = str(e)
    print(json.dumps({"tries": args.tries, "one": one, "both": both, "neither": neither,
                      "cross_env": cross}))
    s1.close(); s2.close(); t1.close(); t2.close()


def scenario_garbage(args):
    """Logs in, opens the sftp subsystem and sends `size` bytes of garbage."""
    t = transport(args, args.legit_source)
    t.auth_password(args.user, args.password)
    ch = t.open_session()
    ch.invoke_subsystem("sftp")
    data = os.urandom(args.size)
    sent = 0
    t0 = time.monotonic()
    try:
        while sent < len(data) and time.monotonic() - t0 < 20:
            sent += ch.send(data[sent:sent + 32768])
    except Exception:
        pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and t.is_active() and not ch.closed:
        time.sleep(0.05)
    print(json.dumps({"sent": sent, "channel_closed": ch.closed,
                      "transport_active": t.is_active(),
                      "seconds": round(time.monotonic() - t0, 2)}))
    t.close()


def scenario_refusals(args):
    """Provokes `n` refusals in one session (writes outside pickup)."""
    t, sftp = sftp_session(args)
    refused = 0
    for i in range(args.n):
        try:
            sftp.open(f"/sandbox/import/results/x{i}.json", "wb").close()
        except IOError:
            refused += 1
    sftp.close()
    t.close()
    print(json.dumps({"refused": refused}))


def scenario_hold(args):
    """Starts an upload, writes a little, says READY, waits for a line on stdin, finishes."""
    t, sftp = sftp_session(args)
    f = sftp.open(args.path, "wb")
    f.write(b"[" + b" " * 1000)
    f.flush()
    sftp.stat(args.path.rsplit("/", 1)[0])  # a round trip: the writes arrived
    print("READY", flush=True)
    sys.stdin.readline()
    f.write(b"]")
    f.close()
    sftp.close()
    t.close()
    print(json.dumps({"done": True}))


def scenario_key_then_password(args):
    """paramiko's SSHClient with a key the server does not know, then the password."""
    c = paramiko.SSHClient()
    c.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    t0 = time.monotonic()
    try:
        c.connect(args.host, port=args.port, username=args.user, password=args.password,
                  key_filename=args.wrong_key, look_for_keys=False, allow_agent=False,
                  timeout=20, auth_timeout=15, banner_timeout=20)
        sftp = c.open_sftp()
        sftp.listdir("/sandbox/import")
        ok = True
        err = ""
    except Exception as e:
        ok = False
        err = repr(e)
    c.close()
    print(json.dumps({"ok": ok, "error": err, "seconds": round(time.monotonic() - t0, 2)}))


def scenario_rsa_sha1(args):
    """Logs in with an RSA key, once forced to ssh-rsa (SHA-1), once with rsa-sha2-256."""
    key = paramiko.RSAKey.from_private_key_file(args.rsa_key)
    out = {}
    for name, disabled in (("sha1", ["rsa-sha2-256", "rsa-sha2-512"]), ("sha2", [])):
        t = paramiko.Transport(connect_sock(args, args.legit_source),
                               disabled_algorithms={"pubkeys": disabled})
        t.start_client(timeout=20)
        try:
            t.auth_publickey(args.user, key)
            out[name] = "accepted"
        except paramiko.AuthenticationException as e:
            out[name] = "rejected: " + str(e)
        except Exception as e:
            out[name] = "error: " + repr(e)
        t.close()
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", default="demo")
    p.add_argument("--password", default="demo")
    p.add_argument("--legit-key")
    p.add_argument("--legit-source", default="127.0.0.2")
    p.add_argument("--list-dir", default="/sandbox/import")
    p.add_argument("--pid", type=int, default=0)
    p.add_argument("--kind", default="passwords")
    p.add_argument("--n", type=int, default=40)
    p.add_argument("--sources", type=int, default=20)
    p.add_argument("--flood-source")
    p.add_argument("--duration", type=float, default=30)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--logins", type=int, default=3)
    p.add_argument("--probe-users", action="store_true")
    p.add_argument("--tries", type=int, default=120)
    p.add_argument("--pickup")
    p.add_argument("--size", type=int, default=1 << 20)
    p.add_argument("--path")
    p.add_argument("--wrong-key")
    p.add_argument("--rsa-key")
    p.add_argument("scenario")
    args = p.parse_args()
    {
        "flood": scenario_flood,
        "login": scenario_login,
        "grace": scenario_grace,
        "probe": scenario_probe,
        "names": scenario_names,
        "race": scenario_race,
        "garbage": scenario_garbage,
        "refusals": scenario_refusals,
        "hold": scenario_hold,
        "key-then-password": scenario_key_then_password,
        "rsa-sha1": scenario_rsa_sha1,
    }[args.scenario](args)


if __name__ == "__main__":
    main()
