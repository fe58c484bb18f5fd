//! End-to-end tests of `bulkload serve` with the real OpenSSH `sftp` client (batch mode).
//!
//! Each test starts the real binary on a free loopback port with a fresh data folder and its
//! own config (`on_upload` with a 1 s delay, `settle_seconds = 0`), then drives it with `sftp -b`.
//! The client is required: when it is missing the tests fail with a message (CI installs
//! `openssh-client`, see `.ci/run`).

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The hash of the password "demo" (config.example.toml).
const DEMO_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$1hCcitXgv2qH/9J8P2cwkQ$1aAuL39/fIukMq/gfXE7XTDDsAAcau76te9H7gms9Eo";

fn require_client() {
    for tool in ["sftp", "ssh-keygen"] {
        if let Err(e) = Command::new(tool).arg("-?").output() {
            if e.kind() == ErrorKind::NotFound {
                panic!("`{tool}` is not installed: these tests need the OpenSSH client (apt-get install openssh-client; .ci/run does it)");
            }
        }
    }
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen runs");
    assert!(out.status.success(), "ssh-keygen: {out:?}");
}

struct Daemon {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

#[derive(Clone, Copy)]
struct Opts {
    max_file_bytes: u64,
    max_login_failures: u32,
    max_sessions: usize,
    idle_seconds: u64,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            max_file_bytes: 10_000_000,
            max_login_failures: 10,
            max_sessions: 64,
            idle_seconds: 600,
        }
    }
}

impl Daemon {
    fn start(opts: Opts) -> Daemon {
        require_client();
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        keygen(&d.join("demo_key"));
        keygen(&d.join("other_key"));
        fs::write(
            d.join("askpass.sh"),
            "#!/bin/sh\ncat \"$BULKLOAD_TEST_PW\"\n",
        )
        .unwrap();
        fs::set_permissions(d.join("askpass.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        let config = format!(
            r#"data_dir = "./data"
[schedule]
settle_seconds = 0
on_upload = true
on_upload_delay_seconds = 1
[sftp]
listen = "127.0.0.1:0"
max_file_bytes = {max}
max_sessions_per_lender = {sessions}
idle_timeout_seconds = {idle}
max_login_failures = {fails}
[[lenders]]
id = "demo"
password_hash = "{DEMO_HASH}"
authorized_keys = "./demo_key.pub"
[[lenders.divisions]]
thread_id = "0123456789abcdef0123456789abcdef"
system_name = "main"
editable_name = "Main Division"
[[lenders]]
id = "other"
authorized_keys = "./other_key.pub"
[[lenders.divisions]]
thread_id = "0123456789abcdef0123456789abcde0"
system_name = "main"
editable_name = "Main Division"
"#,
            max = opts.max_file_bytes,
            fails = opts.max_login_failures,
            sessions = opts.max_sessions,
            idle = opts.idle_seconds,
        );
        fs::write(d.join("bulkload.toml"), config).unwrap();
        let log = fs::File::create(d.join("daemon.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_bulkload"))
            .args(["serve", "--config"])
            .arg(d.join("bulkload.toml"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the daemon starts");
        let mut daemon = Daemon {
            dir,
            port: 0,
            child: Some(child),
        };
        // The daemon binds port 0 and logs the address it got: no race for a free port.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = daemon.log();
            let port = log
                .lines()
                .find(|l| l.contains("listening for SFTP"))
                .and_then(|l| l.split("address=127.0.0.1:").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|p| p.parse().ok());
            if let Some(port) = port {
                daemon.port = port;
                return daemon;
            }
            if let Some(status) = daemon
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

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn log(&self) -> String {
        fs::read_to_string(self.path("daemon.log")).unwrap_or_default()
    }

    fn lender_dir(&self, lender: &str, sub: &str) -> PathBuf {
        self.path(&format!("data/lenders/{lender}/sandbox/import/{sub}"))
    }

    fn batch_file(&self, commands: &str) -> PathBuf {
        let f = tempfile::NamedTempFile::new_in(self.dir.path()).unwrap();
        let (_, path) = f.keep().unwrap();
        fs::write(&path, commands).unwrap();
        path
    }

    fn base_args(&self, batch: &Path) -> Vec<String> {
        [
            "-b",
            batch.to_str().unwrap_or("-"),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=20",
            "-P",
            &self.port.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// `sftp -b` with a key login as `user`, run from the test's folder.
    fn sftp_key(&self, user: &str, key: &str, commands: &str) -> Output {
        let batch = self.batch_file(commands);
        self.key_command(user, key, &batch, &[])
            .stdin(Stdio::null())
            .output()
            .expect("sftp runs")
    }

    /// An `sftp` key login reading its batch from `batch` (`-` for standard input).
    fn key_command(&self, user: &str, key: &str, batch: &Path, extra: &[&str]) -> Command {
        let mut c = Command::new("sftp");
        c.args(self.base_args(batch))
            .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i"])
            .arg(self.path(key))
            .args(extra)
            .arg(format!("{user}@127.0.0.1"))
            .current_dir(self.dir.path());
        c
    }

    /// `sftp -b` with a password login through SSH_ASKPASS (no extra package).
    fn sftp_password(&self, user: &str, password: &str, commands: &str) -> Output {
        let batch = self.batch_file(commands);
        let pw = self.batch_file(&format!("{password}\n"));
        Command::new("sftp")
            // Before `-b`, which turns BatchMode on: ssh keeps an option's first value.
            .args([
                "-o",
                "BatchMode=no",
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "PreferredAuthentications=password",
                "-o",
                "NumberOfPasswordPrompts=1",
            ])
            .args(self.base_args(&batch))
            .arg(format!("{user}@127.0.0.1"))
            .env("SSH_ASKPASS", self.path("askpass.sh"))
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("BULKLOAD_TEST_PW", pw)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("sftp runs")
    }

    /// Asserts the daemon still answers a normal session.
    fn assert_serving(&self) {
        let out = self.sftp_key("demo", "demo_key", "ls /sandbox/import\n");
        assert!(
            out.status.success() && stdout(&out).contains("pickup"),
            "daemon no longer serving: {out:?}\n{}",
            self.log()
        );
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

    fn sigterm(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = i32::try_from(child.id()).expect("pid");
        // SAFETY: plain kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(s) = child.try_wait().expect("wait") {
                return s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the daemon did not stop on SIGTERM\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Asserts a refused command: the client fails and says `expected`.
fn assert_refused(out: &Output, expected: &str, what: &str) {
    assert!(
        !out.status.success(),
        "{what}: expected a refusal, got {out:?}"
    );
    assert!(
        stderr(out).contains(expected),
        "{what}: expected {expected:?} in the client's error, got {:?}",
        stderr(out)
    );
}

#[test]
fn upload_pass_download_with_key_and_password() {
    let d = Daemon::start(Opts::default());
    fs::write(d.path("borrowers.json"), "[]\n").unwrap();

    // Key login: upload into pickup.
    let out = d.sftp_key(
        "demo",
        "demo_key",
        "put borrowers.json /sandbox/import/pickup/borrowers.json\n",
    );
    assert!(out.status.success(), "upload failed: {out:?}\n{}", d.log());

    // The on-upload pass (1 s after close) writes the result and moves the file.
    let results = d.lender_dir("demo", "results");
    d.wait_for("the result file", Duration::from_secs(30), || {
        names(&results).iter().any(|n| n.ends_with(".result.json"))
    });
    let result_name = names(&results)
        .into_iter()
        .find(|n| n.starts_with("borrowers.") && n.ends_with(".result.json"))
        .expect("a result for borrowers.json");

    // Password login: download the result and see the processed file; pickup is empty.
    let out = d.sftp_password(
        "demo",
        "demo",
        &format!(
            "get /sandbox/import/results/{result_name} result.json\nls /sandbox/import/processed\nls /sandbox/import/pickup\n"
        ),
    );
    assert!(
        out.status.success(),
        "download failed: {out:?}\n{}",
        d.log()
    );
    let listing = stdout(&out);
    assert!(listing.contains("borrowers.last.json"), "{listing}");
    let result = fs::read_to_string(d.path("result.json")).unwrap();
    assert!(
        result.contains("\"PickupName\": \"borrowers.json\""),
        "{result}"
    );
    assert!(result.contains("\"Source\": \"SFTP\""), "{result}");
    assert!(names(&d.lender_dir("demo", "pickup")).is_empty());

    let log = d.log();
    assert!(log.contains("upload complete"), "{log}");
    assert!(log.contains("method=\"password\""), "{log}");
}

#[test]
fn refusals_keep_the_daemon_serving() {
    let d = Daemon::start(Opts {
        max_file_bytes: 1000,
        ..Opts::default()
    });
    fs::write(d.path("loans.json"), "[]").unwrap();
    fs::write(d.path("big.json"), vec![b' '; 5000]).unwrap();
    // Something outside every home, and a link planted in the lender's tree pointing at it.
    fs::write(d.path("data/secret.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(
        d.path("data/secret.txt"),
        d.lender_dir("demo", "results").join("link.json"),
    )
    .unwrap();
    fs::write(d.lender_dir("other", "results").join("theirs.json"), "{}").unwrap();
    fs::write(d.lender_dir("demo", "processed").join("x.json"), "[]").unwrap();

    let cases: &[(&str, &str, &str)] = &[
        (
            "write outside pickup",
            "put loans.json /sandbox/import/results/loans.json\n",
            "Permission denied",
        ),
        (
            "write at the root",
            "put loans.json /loans.json\n",
            "Permission denied",
        ),
        (
            "subfolder in pickup",
            "mkdir /sandbox/import/pickup/sub\n",
            "Permission denied",
        ),
        (
            "traversal",
            "get /../../../etc/passwd passwd\n",
            "not found",
        ),
        (
            "traversal to the data dir",
            "get /sandbox/import/../../../secret.txt s.txt\n",
            "not found",
        ),
        (
            "symlink creation",
            "symlink /sandbox/import/results /sandbox/import/pickup/link\n",
            "Permission denied",
        ),
        (
            "following a planted symlink",
            "get /sandbox/import/results/link.json l.json\n",
            "not found",
        ),
        (
            "another lender's folder",
            "ls /../other/sandbox/import/results\n",
            "not found",
        ),
        (
            "another lender's file",
            "get /../other/sandbox/import/results/theirs.json t.json\n",
            "not found",
        ),
        (
            "remove outside pickup",
            "rm /sandbox/import/processed/x.json\n",
            "Permission denied",
        ),
        (
            "size limit",
            "put big.json /sandbox/import/pickup/big.json\n",
            "Failure",
        ),
    ];
    for (what, commands, expected) in cases {
        let out = d.sftp_key("demo", "demo_key", commands);
        assert_refused(&out, expected, what);
        d.assert_serving();
    }
    assert!(!d.path("passwd").exists() && !d.path("s.txt").exists());
    assert!(!d.path("l.json").exists() && !d.path("t.json").exists());
    // Nothing of the refused upload is left, not even a temporary file.
    assert!(names(&d.lender_dir("demo", "pickup")).is_empty());

    // `cd ..` at the root stays at the root.
    let out = d.sftp_key("demo", "demo_key", "cd ..\ncd ../..\npwd\n");
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).contains("Remote working directory: /\n"),
        "{}",
        stdout(&out)
    );

    // Wrong password, unknown user, and one lender's key for another lender.
    let out = d.sftp_password("demo", "not-the-password", "ls\n");
    assert_refused(&out, "Permission denied", "wrong password");
    d.assert_serving();
    let out = d.sftp_password("nobody", "demo", "ls\n");
    assert_refused(&out, "Permission denied", "unknown user");
    d.assert_serving();
    let out = d.sftp_key("other", "demo_key", "ls\n");
    assert_refused(&out, "Permission denied", "demo's key for other");
    let out = d.sftp_key("other", "other_key", "ls /sandbox/import/results\n");
    assert!(stdout(&out).contains("theirs.json"), "{out:?}");
    d.assert_serving();

    let log = d.log();
    assert!(log.contains("refused: login failed"), "{log}");
    assert!(
        !log.contains("not-the-password"),
        "a password reached the log"
    );
}

#[test]
fn repeated_failures_ban_the_address() {
    let d = Daemon::start(Opts {
        max_login_failures: 2,
        ..Opts::default()
    });
    for _ in 0..2 {
        let out = d.sftp_password("demo", "wrong", "ls\n");
        assert!(!out.status.success());
    }
    // Banned: even a good key is refused before the handshake.
    let out = d.sftp_key("demo", "demo_key", "ls /sandbox/import\n");
    assert!(!out.status.success(), "a banned address logged in: {out:?}");
    assert!(d.log().contains("refused: address banned"), "{}", d.log());
}

#[test]
fn fifty_concurrent_clients_lose_no_file() {
    const CLIENTS: usize = 50;
    let d = Daemon::start(Opts::default());
    for i in 0..CLIENTS {
        fs::write(d.path(&format!("borrowers_{i:02}.json")), "[]\n").unwrap();
    }
    let outputs: Vec<Output> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let d = &d;
                s.spawn(move || {
                    d.sftp_key(
                        "demo",
                        "demo_key",
                        &format!("put borrowers_{i:02}.json /sandbox/import/pickup/\n"),
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    for (i, out) in outputs.iter().enumerate() {
        assert!(
            out.status.success(),
            "client {i} failed: {out:?}\n{}",
            d.log()
        );
    }
    let processed = d.lender_dir("demo", "processed");
    d.wait_for("every file processed", Duration::from_secs(60), || {
        names(&processed).len() >= CLIENTS
    });
    let got = names(&processed);
    for i in 0..CLIENTS {
        let want = format!("borrowers_{i:02}.last.json");
        assert!(
            got.contains(&want),
            "{want} missing from processed: {got:?}"
        );
    }
    let results = names(&d.lender_dir("demo", "results"));
    assert_eq!(results.len(), CLIENTS, "{results:?}");
    assert!(names(&d.lender_dir("demo", "pickup")).is_empty());
}

#[test]
fn sigterm_stops_cleanly() {
    let mut d = Daemon::start(Opts::default());
    d.assert_serving();
    let status = d.sigterm();
    assert!(status.success(), "exit status {status}\n{}", d.log());
    assert!(d.log().contains("stopped"), "{}", d.log());
    // The host key was generated with mode 0600 and is reused.
    let mode = fs::metadata(d.path("data/host_key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn session_cap_and_idle_timeout() {
    let d = Daemon::start(Opts {
        max_sessions: 1,
        idle_seconds: 3,
        ..Opts::default()
    });
    // A session that stays open: its batch comes from a pipe we keep open.
    let mut held = d
        .key_command("demo", "demo_key", Path::new("-"), &[])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sftp runs");
    d.wait_for("the first login", Duration::from_secs(20), || {
        d.log().contains("method=\"publickey\"")
    });
    let out = d.sftp_key("demo", "demo_key", "ls\n");
    assert_refused(&out, "Permission denied", "a second session over the cap");
    assert!(d.log().contains("too many sessions"), "{}", d.log());

    // The idle session is closed by the daemon, which frees the slot. (The client itself only
    // notices when it next reads a command.)
    d.wait_for(
        "the idle session to be closed",
        Duration::from_secs(20),
        || d.log().contains("session closed"),
    );
    let _ = held.kill();
    let _ = held.wait();
    d.assert_serving();
}

#[test]
fn a_client_gone_mid_upload_leaves_nothing() {
    let d = Daemon::start(Opts::default());
    fs::write(d.path("big.json"), vec![b' '; 2_000_000]).unwrap();
    let batch = d.batch_file("put big.json /sandbox/import/pickup/big.json\n");
    // 200 Kbit/s: the upload would take over a minute.
    let mut client = d
        .key_command("demo", "demo_key", &batch, &["-l", "200"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sftp runs");
    let pickup = d.lender_dir("demo", "pickup");
    d.wait_for("the temporary upload file", Duration::from_secs(20), || {
        names(&pickup)
            .iter()
            .any(|n| n.starts_with(".big.json.") && n.ends_with(".part"))
    });
    // The lender never sees it.
    let out = d.sftp_key("demo", "demo_key", "ls -a /sandbox/import/pickup\n");
    assert!(
        out.status.success() && !stdout(&out).contains("big.json"),
        "{out:?}"
    );

    client.kill().expect("kill our own sftp child");
    let _ = client.wait();
    d.wait_for(
        "the temporary file to be removed",
        Duration::from_secs(20),
        || names(&pickup).is_empty(),
    );
    d.assert_serving();
}

#[test]
fn sigterm_during_a_pass_finishes_the_current_file() {
    const FILES: usize = 40;
    let mut d = Daemon::start(Opts::default());
    fs::create_dir(d.path("up")).unwrap();
    for i in 0..FILES {
        fs::write(d.path(&format!("up/borrowers_{i:02}.json")), "[]\n").unwrap();
    }
    let out = d.sftp_key("demo", "demo_key", "put up/* /sandbox/import/pickup/\n");
    assert!(out.status.success(), "{out:?}");
    d.wait_for("the upload pass to start", Duration::from_secs(20), || {
        d.log().contains("pass starting trigger=\"upload\"")
    });
    let status = d.sigterm();
    assert!(status.success(), "exit status {status}\n{}", d.log());

    // Every file is either still waiting in pickup or fully processed (processed + result):
    // nothing half done, nothing left in the pass's work folder.
    let pickup = names(&d.lender_dir("demo", "pickup"));
    let processed = names(&d.lender_dir("demo", "processed"));
    let results = names(&d.lender_dir("demo", "results"));
    eprintln!(
        "stopped with {} waiting, {} done",
        pickup.len(),
        processed.len()
    );
    assert_eq!(processed.len(), results.len(), "{processed:?} {results:?}");
    for i in 0..FILES {
        let waiting = pickup.contains(&format!("borrowers_{i:02}.json"));
        let done = processed.contains(&format!("borrowers_{i:02}.last.json"));
        assert!(
            waiting != done,
            "file {i}: waiting={waiting} done={done}\n{}",
            d.log()
        );
    }
    assert!(names(&d.path("data/work/sandbox/demo")).is_empty());
}
