//! Issue 8, "drop-box hardening": each attack of the issue, scaled down but of the same shape,
//! against the real `bulkload serve` binary on loopback.
//!
//! Clients: paramiko (driven through `tests/hardening_client.py`, which prints one JSON object
//! per scenario) and the OpenSSH client. `.ci/run` installs both; when paramiko is missing the
//! tests that need it say so and return early. The tests of this file run one at a time (a
//! flood measuring login latency must not share the two cores with another flood).

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The hash of the password "demo" (config.example.toml).
const DEMO_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$1hCcitXgv2qH/9J8P2cwkQ$1aAuL39/fIukMq/gfXE7XTDDsAAcau76te9H7gms9Eo";

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn keygen(path: &Path, kind: &str) {
    let mut c = Command::new("ssh-keygen");
    c.args(["-q", "-t", kind, "-N", "", "-f"]).arg(path);
    if kind == "rsa" {
        c.args(["-b", "2048", "-m", "PEM"]);
    }
    let out = c
        .output()
        .expect("ssh-keygen runs (apt-get install openssh-client)");
    assert!(out.status.success(), "ssh-keygen: {out:?}");
}

struct Daemon {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Daemon {
    /// Starts the daemon with `extra` appended to its `[sftp]` table.
    fn start(extra: &str) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        keygen(&d.join("demo_key"), "ed25519");
        keygen(&d.join("stranger_key"), "ed25519");
        keygen(&d.join("rsa_key"), "rsa");
        let mut keys = fs::read_to_string(d.join("demo_key.pub")).unwrap();
        keys.push_str(&fs::read_to_string(d.join("rsa_key.pub")).unwrap());
        fs::write(d.join("authorized_keys"), keys).unwrap();
        fs::write(
            d.join("bulkload.toml"),
            format!(
                r#"data_dir = "./data"
[schedule]
settle_seconds = 0
on_upload = true
on_upload_delay_seconds = 1
[sftp]
listen = "127.0.0.1:0"
{extra}
[[lenders]]
id = "demo"
password_hash = "{DEMO_HASH}"
authorized_keys = "./authorized_keys"
[[lenders.divisions]]
thread_id = "0123456789abcdef0123456789abcdef"
system_name = "main"
editable_name = "Main Division"
"#
            ),
        )
        .unwrap();
        let mut daemon = Daemon {
            dir,
            port: 0,
            child: None,
        };
        daemon.spawn();
        daemon
    }

    /// (Re)starts the binary on this folder and waits for its port.
    fn spawn(&mut self) {
        let d = self.dir.path();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("daemon.log"))
            .unwrap();
        let start_len = fs::metadata(d.join("daemon.log")).map_or(0, |m| m.len()) as usize;
        self.child = Some(
            Command::new(env!("CARGO_BIN_EXE_bulkload"))
                .args(["serve", "--config"])
                .arg(d.join("bulkload.toml"))
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("the daemon starts"),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = self.log();
            let port = log[start_len.min(log.len())..]
                .lines()
                .find(|l| l.contains("listening for SFTP"))
                .and_then(|l| l.split("address=127.0.0.1:").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|p| p.parse().ok());
            if let Some(port) = port {
                self.port = port;
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("the daemon exited ({status}): {log}");
            }
            assert!(
                Instant::now() < deadline,
                "the daemon never listened: {log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn log(&self) -> String {
        fs::read_to_string(self.path("daemon.log")).unwrap_or_default()
    }

    fn pickup(&self, env: &str) -> PathBuf {
        self.path(&format!("data/lenders/demo/{env}/import/pickup"))
    }

    fn results(&self) -> PathBuf {
        self.path("data/lenders/demo/sandbox/import/results")
    }

    fn sigkill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn client(&self, scenario: &str, args: &[&str]) -> Command {
        let mut c = Command::new("python3");
        c.arg(client_script())
            .args(["--port", &self.port.to_string()])
            .args(args)
            .arg(scenario)
            .current_dir(self.dir.path());
        c
    }

    /// Runs a scenario; `None` when paramiko is missing (said on stderr).
    fn py(&self, scenario: &str, args: &[&str]) -> Option<Value> {
        let out = self
            .client(scenario, args)
            .stdin(Stdio::null())
            .output()
            .expect("python3 runs");
        json_of(scenario, &out, &self.log())
    }

    fn wait_for(&self, what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn ssh_base(&self) -> Vec<String> {
        [
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=20",
            "-p",
            &self.port.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.sigkill();
    }
}

fn client_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hardening_client.py")
}

fn json_of(scenario: &str, out: &Output, log: &str) -> Option<Value> {
    if out.status.code() == Some(77) {
        eprintln!(
            "SKIPPED {scenario}: paramiko is not installed (pip install paramiko; .ci/run does it)"
        );
        return None;
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{scenario} failed: {out:?}\n{}\ndaemon log:\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().rev().find(|l| l.starts_with('{'));
    Some(serde_json::from_str(line.unwrap_or("{}")).expect("scenario prints JSON"))
}

fn secs(v: &Value) -> Vec<f64> {
    v["legit_seconds"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

// ---- 1 and 9: names ---------------------------------------------------------------------

#[test]
fn long_names_are_refused_with_the_limit_and_the_longest_is_imported() {
    let _s = serial();
    let d = Daemon::start("");
    let Some(v) = d.py("names", &[]) else { return };
    let long = v["long"].as_str().unwrap_or_default();
    assert!(
        long.contains("limited to 209 bytes"),
        "a 210-byte name must be refused with the limit: {v}"
    );
    assert!(
        v["rename_long"]
            .as_str()
            .unwrap_or_default()
            .contains("limited to 209 bytes"),
        "{v}"
    );
    assert_eq!(v["limit"], "ok", "{v}");
    // The longest allowed name goes through a pass: claimed, applied, result written.
    d.wait_for(
        "the 209-byte file's result",
        Duration::from_secs(30),
        || {
            fs::read_dir(d.results())
                .map(|rd| rd.filter_map(Result::ok).any(|e| e.file_name().len() > 209))
                .unwrap_or(false)
        },
    );
    let log = d.log();
    assert!(!log.contains("File name too long"), "{log}");
}

#[test]
fn non_utf8_bidi_and_control_names_are_refused() {
    let _s = serial();
    let d = Daemon::start("");
    let Some(v) = d.py("names", &[]) else { return };
    let msg = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    assert!(msg("non_utf8").contains("valid UTF-8"), "{v}");
    assert!(msg("bidi").contains("bidirectional"), "{v}");
    assert!(msg("lrm").contains("bidirectional"), "{v}");
    assert!(msg("control").contains("control character"), "{v}");
    let names: Vec<String> = fs::read_dir(d.pickup("sandbox"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.contains('\u{FFFD}')),
        "no lossy name may be created: {names:?}"
    );
}

// ---- 2: argon2 flood --------------------------------------------------------------------

#[test]
fn wrong_password_flood_keeps_memory_bounded_and_logins_fast() {
    let _s = serial();
    // No ban, so that every attempt reaches the password check (the flood's worst case).
    let d = Daemon::start("max_login_failures = 100000\n");
    let pid = d.pid().to_string();
    let Some(v) = d.py(
        "flood",
        &[
            "--kind",
            "passwords",
            "--n",
            "40",
            "--sources",
            "20",
            "--pid",
            &pid,
            "--duration",
            "8",
            "--warmup",
            "1.5",
            "--logins",
            "3",
            "--probe-users",
        ],
    ) else {
        return;
    };
    eprintln!("argon2 flood: {v}");
    // An unknown user is answered in the time a known one is, under load too.
    let probe = |u: &str| v["probe_seconds"][u].as_f64().unwrap_or(99.0);
    let (unknown, known) = (probe("nobody-such"), probe("demo"));
    assert!(
        unknown >= 0.9 && known >= 0.9 && (unknown - known).abs() < 1.0,
        "wrong password: unknown user {unknown} s, known user {known} s"
    );
    let logins = secs(&v);
    assert_eq!(logins.len(), 3, "every legitimate login succeeds: {v}");
    assert!(
        logins.iter().all(|s| *s < 5.0),
        "legitimate logins during the flood took {logins:?}"
    );
    let hwm = v["hwm_kib"].as_u64().unwrap_or(0);
    assert!(hwm > 0 && hwm < 150 * 1024, "peak RSS {hwm} KiB: {v}");
    assert!(
        v["counts"]["rejected"].as_u64().unwrap_or(0) >= 20,
        "the flood ran: {v}"
    );
}

// ---- 3: idle and stalled connections, login grace ---------------------------------------

#[test]
fn idle_and_stalled_floods_from_one_address_do_not_lock_out_another() {
    let _s = serial();
    let d = Daemon::start("");
    for kind in ["idle", "stall"] {
        let n = if kind == "idle" { "300" } else { "40" };
        let Some(v) = d.py(
            "flood",
            &[
                "--kind",
                kind,
                "--n",
                n,
                "--flood-source",
                "127.0.0.1",
                "--duration",
                "6",
                "--warmup",
                "2",
                "--logins",
                "2",
            ],
        ) else {
            return;
        };
        eprintln!("{kind} flood: {v}");
        let logins = secs(&v);
        assert_eq!(
            logins.len(),
            2,
            "{kind}: every legitimate login succeeds: {v}"
        );
        assert!(logins.iter().all(|s| *s < 5.0), "{kind}: {logins:?}");
    }
    assert!(
        d.log()
            .contains("too many connections from this address that have not logged in"),
        "the per-address cap refused the flood"
    );
}

#[test]
fn login_grace_time_closes_a_stalled_authentication_despite_keepalives() {
    let _s = serial();
    let d = Daemon::start("login_grace_seconds = 2\n");
    let Some(v) = d.py("grace", &["--duration", "15"]) else {
        return;
    };
    assert_eq!(v["closed"], true, "{v}");
    let s = v["seconds"].as_f64().unwrap_or(99.0);
    assert!((1.5..6.0).contains(&s), "closed after {s} s: {v}");
    assert!(d.log().contains("no login within the login grace time"));
    // A login that is quick enough is not affected.
    let Some(v) = d.py("login", &[]) else { return };
    assert!(v["seconds"].as_f64().unwrap_or(99.0) < 2.0, "{v}");
}

// ---- 4: algorithms ----------------------------------------------------------------------

#[test]
fn only_modern_key_exchange_and_no_sha1_rsa_signatures() {
    let _s = serial();
    let d = Daemon::start("");
    let out = Command::new("ssh")
        // Before the base options: ssh keeps an option's first value, and the refusal is
        // logged at INFO.
        .args(["-o", "LogLevel=INFO"])
        .args(d.ssh_base())
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "KexAlgorithms=diffie-hellman-group18-sha512",
            "demo@127.0.0.1",
            "true",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("ssh runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no matching key exchange method"),
        "group18 must be refused: {err}"
    );
    // SHA-1 `ssh-rsa` signatures: OpenSSH and paramiko no longer send them once the server's
    // `server-sig-algs` leaves them out, so russh's client signs one on purpose.
    let key = russh::keys::load_secret_key(d.path("rsa_key"), None).expect("RSA key");
    let sha1 = rsa_login(d.port, &key, None);
    assert!(!sha1, "an ssh-rsa (SHA-1) signature must be refused");
    assert!(d
        .log()
        .contains("ssh-rsa (SHA-1) signatures are not accepted"));
    let sha2 = rsa_login(d.port, &key, Some(russh::keys::HashAlg::Sha256));
    assert!(sha2, "rsa-sha2-256 is accepted: {}", d.log());
    // ssh-audit, when installed (.ci/run installs it): nothing the configuration could remove.
    // The warnings left are curve25519's lack of post-quantum protection (removing it would
    // lock out every client without ML-KEM: OpenSSH < 9.9, paramiko, WinSCP) and the plain
    // SHA-2 MACs libssh2 < 1.11 needs (curl), offered last; both stay.
    let audit = Command::new("python3")
        .args(["-m", "ssh_audit", "-n", "--skip-rate-test", "-p"])
        .arg(d.port.to_string())
        .arg("127.0.0.1")
        .output();
    match audit {
        Ok(out) if String::from_utf8_lossy(&out.stderr).contains("No module named") => {
            eprintln!("SKIPPED ssh-audit: not installed (pip install ssh-audit; .ci/run does it)")
        }
        Err(e) => eprintln!("SKIPPED ssh-audit: python3 cannot run ({e})"),
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("mlkem768x25519-sha256"), "{text}");
            let bad: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("[warn]") || l.contains("[fail]"))
                .filter(|l| {
                    !(l.starts_with("(kex) curve25519-sha256")
                        && l.contains("does not provide protection against post-quantum attacks"))
                })
                // The plain SHA-2 MACs, offered last for libssh2 < 1.11 (curl on Debian 12,
                // which has no encrypt-then-MAC and no AEAD cipher; issue 9): a warning, not a
                // weakness clients with a better choice ever use.
                .filter(|l| {
                    !((l.starts_with("(mac) hmac-sha2-256 ")
                        || l.starts_with("(mac) hmac-sha2-512 "))
                        && l.contains("using encrypt-and-MAC mode"))
                })
                .collect();
            assert!(
                bad.is_empty(),
                "ssh-audit warnings:\n{}\n{text}",
                bad.join("\n")
            );
        }
    }
}

struct AnyHostKey;

impl russh::client::Handler for AnyHostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// A key login of `demo` with russh's client, signing with `hash` (`None`: SHA-1 `ssh-rsa`).
fn rsa_login(port: u16, key: &russh::keys::PrivateKey, hash: Option<russh::keys::HashAlg>) -> bool {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cfg = std::sync::Arc::new(russh::client::Config::default());
        let mut h = russh::client::connect(cfg, ("127.0.0.1", port), AnyHostKey)
            .await
            .expect("connects");
        let key = russh::keys::PrivateKeyWithHashAlg::new(std::sync::Arc::new(key.clone()), hash);
        let r = h
            .authenticate_publickey("demo", key)
            .await
            .expect("auth runs");
        r.success()
    })
}

// ---- 5: renames -------------------------------------------------------------------------

#[test]
fn racing_renames_never_leave_two_names_and_environments_stay_apart() {
    let _s = serial();
    let d = Daemon::start("");
    let pickup = d.pickup("sandbox");
    let Some(v) = d.py(
        "race",
        &["--tries", "120", "--pickup", pickup.to_str().unwrap()],
    ) else {
        return;
    };
    assert_eq!(v["both"], 0, "{v}");
    assert_eq!(v["neither"], 0, "{v}");
    assert_eq!(v["one"], 120, "{v}");
    assert!(
        v["cross_env"]
            .as_str()
            .unwrap_or_default()
            .contains("across environments"),
        "{v}"
    );
    assert!(!d.pickup("production").join("cross.json").exists());
}

// ---- 6: log floods ----------------------------------------------------------------------

#[test]
fn garbage_in_the_sftp_channel_ends_the_session_with_one_log_line() {
    let _s = serial();
    let d = Daemon::start("");
    let before = d.log().lines().count();
    let Some(v) = d.py("garbage", &["--size", "1048576"]) else {
        return;
    };
    assert!(
        v["channel_closed"] == true || v["transport_active"] == false,
        "the session must end: {v}"
    );
    let log = d.log();
    let new: Vec<&str> = log.lines().skip(before).collect();
    let malformed: Vec<&&str> = new
        .iter()
        .filter(|l| l.contains("malformed SFTP packet"))
        .collect();
    assert_eq!(malformed.len(), 1, "{}", new.join("\n"));
    assert!(
        malformed[0].contains("lender=demo") && malformed[0].contains("address=127.0.0.2"),
        "{}",
        malformed[0]
    );
    assert!(new.len() < 20, "{} lines:\n{}", new.len(), new.join("\n"));

    // 300 refusals in one session: at most the window's lines, then a summary.
    let before = d.log().lines().count();
    let Some(v) = d.py("refusals", &["--n", "300"]) else {
        return;
    };
    assert_eq!(v["refused"], 300);
    d.wait_for("the summary line", Duration::from_secs(25), || {
        d.log().contains("more refusal lines suppressed")
    });
    let log = d.log();
    let lines = log.lines().skip(before).count();
    assert!(lines < 40, "{lines} log lines for 300 refusals");
}

// ---- 7: crash leftovers -----------------------------------------------------------------

fn part_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".part"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn stale_partial_uploads_are_removed_but_never_a_live_one() {
    let _s = serial();
    let mut d = Daemon::start("");
    let pickup = d.pickup("sandbox");
    // A live upload survives a pass (the sweep runs before every pass).
    let mut hold = d
        .client(
            "hold",
            &["--path", "/sandbox/import/pickup/borrowers_live.json"],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut out = BufReader::new(hold.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    if !line.starts_with("READY") {
        let status = hold.wait().unwrap();
        if status.code() == Some(77) {
            eprintln!("SKIPPED: paramiko is not installed");
            return;
        }
        panic!("hold did not start: {line} {status}\n{}", d.log());
    }
    assert_eq!(part_files(&pickup).len(), 1);
    // Another upload triggers a pass meanwhile.
    if d.py("names", &[]).is_none() {
        let _ = hold.kill();
        let _ = hold.wait();
        return;
    }
    d.wait_for("a pass", Duration::from_secs(30), || {
        d.log().contains("pass complete")
    });
    assert_eq!(
        part_files(&pickup).len(),
        1,
        "the live upload's temp file stays"
    );
    writeln!(hold.stdin.as_mut().unwrap()).unwrap();
    assert!(hold.wait().unwrap().success());
    assert!(
        pickup.join("borrowers_live.json").exists() || {
            // The pass may already have taken it.
            fs::read_dir(d.results())
                .unwrap()
                .filter_map(Result::ok)
                .any(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("borrowers_live")
                })
        }
    );

    // SIGKILL mid-upload leaves a temp file; the restarted daemon removes it.
    let mut hold = d
        .client("hold", &["--path", "/sandbox/import/pickup/killed.json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(hold.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("READY"), "{line}");
    d.sigkill();
    let _ = hold.kill();
    let _ = hold.wait();
    assert_eq!(part_files(&pickup).len(), 1, "SIGKILL leaves the temp file");
    d.spawn();
    assert!(
        part_files(&pickup).is_empty(),
        "the restart removed it: {:?}",
        part_files(&pickup)
    );
    assert!(d.log().contains("removed a stale partial upload"));
}

// ---- 8: auth behaviour ------------------------------------------------------------------

#[test]
fn paramiko_key_then_password_and_openssh_asks_again_after_a_wrong_password() {
    let _s = serial();
    let d = Daemon::start("");
    if let Some(v) = d.py(
        "key-then-password",
        &["--wrong-key", d.path("stranger_key").to_str().unwrap()],
    ) {
        assert_eq!(v["ok"], true, "{v}");
        assert!(v["seconds"].as_f64().unwrap_or(99.0) < 5.0, "{v}");
        let log = d.log();
        assert!(
            log.lines()
                .any(|l| l.contains("refused: key not authorized")
                    && l.contains("lender=\"demo\"")
                    && l.contains("address=127.0.0.1")),
            "{log}"
        );
    }
    // OpenSSH: a wrong password, then the right one at the second prompt.
    let askpass = d.path("askpass.sh");
    fs::write(
        &askpass,
        "#!/bin/sh\nn=$(cat \"$COUNTER\" 2>/dev/null || echo 0)\necho $((n+1)) > \"$COUNTER\"\nif [ \"$n\" = 0 ]; then echo wrong; else echo demo; fi\n",
    )
    .unwrap();
    fs::set_permissions(&askpass, fs::Permissions::from_mode(0o755)).unwrap();
    let batch = d.path("batch.txt");
    fs::write(&batch, "ls /sandbox/import\n").unwrap();
    let t0 = Instant::now();
    let out = Command::new("sftp")
        .args([
            "-o",
            "BatchMode=no",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "NumberOfPasswordPrompts=2",
        ])
        .args(["-b"])
        .arg(&batch)
        .args(d.ssh_base().iter().map(|a| {
            if a == "-p" {
                "-P".to_string()
            } else {
                a.clone()
            }
        }))
        .arg("demo@127.0.0.1")
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("COUNTER", d.path("counter"))
        .stdin(Stdio::null())
        .output()
        .expect("sftp runs");
    assert!(
        out.status.success(),
        "the second password prompt must be offered: {out:?}\n{}",
        d.log()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("pickup"));
    assert_eq!(fs::read_to_string(d.path("counter")).unwrap().trim(), "2");
    assert!(t0.elapsed() < Duration::from_secs(15));
}

// ---- 10: RSA host keys ------------------------------------------------------------------

#[test]
fn an_rsa_host_key_is_refused_at_start() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    keygen(&dir.path().join("host_rsa"), "rsa");
    fs::write(
        dir.path().join("bulkload.toml"),
        "data_dir = \"./data\"\n[sftp]\nlisten = \"127.0.0.1:0\"\nhost_key = \"./host_rsa\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bulkload"))
        .args(["serve", "--config"])
        .arg(dir.path().join("bulkload.toml"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("RSA host keys are refused") && err.contains("RUSTSEC-2023-0071"),
        "{err}"
    );
}
