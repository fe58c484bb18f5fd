//! Operations (issue 13) end to end, with real receivers the tests start: a webhook receiver
//! that verifies the Standard Webhooks signature (and one that fails the first tries), an SMTP
//! server on loopback (python3 -m aiosmtpd), a delivery after SIGKILL between the load's commit
//! and the delivery, `/metrics` checked by `promtool check metrics`, retention, config check.

mod common;

use base64::Engine as _;
use common::*;
use hmac::{KeyInit, Mac};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The example config's hash of "demo".
const DEMO_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$1hCcitXgv2qH/9J8P2cwkQ$1aAuL39/fIukMq/gfXE7XTDDsAAcau76te9H7gms9Eo";

/// Logs in as acme with a wrong password (refused), then with "demo", and uploads `[]` as
/// production/import/pickup/loans.json.
const PARAMIKO_UPLOAD: &str = r#"
import sys, io, paramiko
port = int(sys.argv[1])
t = paramiko.Transport(("127.0.0.1", port))
t.connect()
try:
    t.auth_password("acme", "wrong")
except paramiko.AuthenticationException:
    pass
t.auth_password("acme", "demo")
s = paramiko.SFTPClient.from_transport(t)
s.putfo(io.BytesIO(b"[]"), "/production/import/pickup/loans.json", confirm=False)
s.close()
t.close()
"#;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Debug, Clone)]
struct Received {
    at: Instant,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}
impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A webhook receiver on loopback: answers `fail_first` requests with 500, then 200.
fn receiver(fail_first: usize) -> (String, Arc<Mutex<Vec<Received>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let g = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let r = read_request(&s);
            let n = {
                let mut v = g.lock().unwrap();
                v.push(r);
                v.len()
            };
            let status = if n <= fail_first {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let mut s = s;
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (url, got)
}

fn read_request(s: &TcpStream) -> Received {
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap();
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    Received {
        at: Instant::now(),
        headers,
        body,
    }
}

/// Verifies a request as a Standard Webhooks library does.
fn verify(r: &Received) -> serde_json::Value {
    let id = r.header("webhook-id").expect("webhook-id");
    let ts = r.header("webhook-timestamp").expect("webhook-timestamp");
    let sig = r.header("webhook-signature").expect("webhook-signature");
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&r.body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert!(
        sig.split(' ').any(|s| s == expected),
        "signature {sig} != {expected}"
    );
    let now = chrono::Utc::now().timestamp();
    assert!((now - ts.parse::<i64>().unwrap()).abs() < 300);
    serde_json::from_slice(&r.body).unwrap()
}

/// A home with one lender `acme` (from the fixture config) and `extra` config appended to it.
fn home_with(lender_extra: &str, extra: &str) -> Home {
    let home = Home::new(&repo().join("fixtures/config.toml"));
    let text = fs::read_to_string(&home.config).unwrap();
    // The acme lender's block ends where beta's starts; its own keys go right after `id`.
    let text = text.replacen(
        "id = \"acme\"\n",
        &format!("id = \"acme\"\n{lender_extra}\n"),
        1,
    );
    fs::write(&home.config, format!("{text}\n{extra}\n")).unwrap();
    home
}

const EMPLOYEES: &str = r#"[
 {"Mode": "create", "ExternalId": "E1", "DivisionThreadIds": ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"], "FirstName": "Ann", "Email": "ann@acme.test"},
 {"Mode": "create", "ExternalId": "E2", "DivisionThreadIds": ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"], "FirstName": "Bob", "Email": "broken"},
 {"Mode": "bogus"}
]"#;

fn drop_file(home: &Home) {
    fs::write(
        home.pickup("acme", "sandbox").join("employees.json"),
        EMPLOYEES,
    )
    .unwrap();
}

fn result_json(home: &Home) -> (String, serde_json::Value) {
    let dir = home.import("acme", "sandbox").join("results");
    let name = names(&dir)
        .into_iter()
        .find(|n| n.ends_with(".result.json"))
        .expect("a result file");
    let v = serde_json::from_slice(&fs::read(dir.join(&name)).unwrap()).unwrap();
    (name, v)
}

/// Result files in `dir` (a failed-records file may sit beside each).
fn result_files(dir: &std::path::Path) -> usize {
    names(dir)
        .iter()
        .filter(|n| n.ends_with(".result.json"))
        .count()
}

fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn webhook_cfg(url: &str) -> String {
    format!("[[lenders.webhooks]]\nurl = {url:?}\nsecret = {SECRET:?}\n")
}

#[test]
fn webhook_is_signed_and_carries_the_result() {
    let (url, got) = receiver(0);
    let home = home_with(&webhook_cfg(&url), "");
    drop_file(&home);
    let out = home.run_command().output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reqs = wait_for("the webhook", 10, || {
        let v = got.lock().unwrap();
        (!v.is_empty()).then(|| v.clone())
    });
    assert_eq!(reqs.len(), 1);
    let ev = verify(&reqs[0]);
    let (result_name, result) = result_json(&home);
    assert_eq!(ev["type"], "load.finished");
    assert_eq!(ev["timestamp"], result["EndedAt"]);
    let d = &ev["data"];
    assert_eq!(d["environment"], "sandbox");
    assert_eq!(d["lender"], "acme");
    for k in [
        "Id",
        "PickupName",
        "ProcessedName",
        "NumCreateSuccess",
        "NumCreateFailure",
        "NumModeFailure",
        "ErrorMessage",
    ] {
        assert_eq!(d[k], result[k], "{k}");
    }
    assert_eq!(d["NumCreateSuccess"], 1);
    assert_eq!(d["ResultName"], result_name.as_str());
    assert_eq!(
        d["ResultPath"],
        format!("/sandbox/import/results/{result_name}").as_str()
    );
    // Delivered: the next run sends nothing again.
    home.run();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(got.lock().unwrap().len(), 1);
}

#[test]
fn webhook_after_sigkill_between_commit_and_delivery() {
    let (url, got) = receiver(0);
    let home = home_with(&webhook_cfg(&url), "");
    drop_file(&home);
    let out = home
        .run_command()
        .env("BULKLOAD_FAILPOINT", "committed")
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(9), "killed after the commit");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        got.lock().unwrap().is_empty(),
        "nothing sent before the kill"
    );
    home.run(); // recovers the load (result, move), then delivers
    let reqs = wait_for("the webhook", 10, || {
        let v = got.lock().unwrap();
        (!v.is_empty()).then(|| v.clone())
    });
    assert_eq!(reqs.len(), 1);
    let ev = verify(&reqs[0]);
    let (_, result) = result_json(&home);
    assert_eq!(ev["data"]["Id"], result["Id"]);
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Daemon(Child);
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(home: &Home) -> Daemon {
    Daemon(
        Command::new(bin())
            .arg("serve")
            .arg("--config")
            .arg(&home.config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

fn ops_section(sftp_port: u16, metrics_port: u16, retry_base: f64) -> String {
    format!(
        "[notify]\nretry_base_seconds = {retry_base}\ntimeout_seconds = 2\n\
         [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\
         [sftp]\nlisten = \"127.0.0.1:{sftp_port}\"\n"
    )
}

#[test]
fn webhook_retries_with_doubling_backoff() {
    let (url, got) = receiver(2);
    let home = home_with(
        &webhook_cfg(&url),
        &ops_section(free_port(), free_port(), 0.5),
    );
    drop_file(&home);
    let _d = serve(&home);
    let reqs = wait_for("three tries", 20, || {
        let v = got.lock().unwrap();
        (v.len() >= 3).then(|| v.clone())
    });
    let ids: Vec<_> = reqs
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_string())
        .collect();
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "same webhook-id on every try"
    );
    for r in &reqs {
        verify(r);
    }
    let gap1 = reqs[1].at - reqs[0].at;
    let gap2 = reqs[2].at - reqs[1].at;
    // Base 0.5 s, polled every 50 ms: the first retry after 0.45-0.5 s, the second 0.95-1 s.
    assert!(gap1 >= Duration::from_millis(400), "{gap1:?}");
    assert!(gap2 >= Duration::from_millis(900), "doubling: {gap2:?}");
    assert!(
        gap2 > gap1 + Duration::from_millis(300),
        "doubling: {gap1:?} then {gap2:?}"
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        got.lock().unwrap().len(),
        3,
        "delivered on the third try: no more"
    );
}

#[test]
fn slow_receiver_never_slows_a_pass() {
    // Accepts and never answers.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut keep = Vec::new();
        for s in l.incoming() {
            keep.push(s);
        }
    });
    let home = home_with(
        &webhook_cfg(&url),
        &ops_section(free_port(), free_port(), 5.0)
            .replace("timeout_seconds = 2", "timeout_seconds = 30"),
    );
    // A pass every second.
    let text = fs::read_to_string(&home.config).unwrap();
    fs::write(
        &home.config,
        text.replacen(
            "settle_seconds = 0",
            "settle_seconds = 0\ncron = \"* * * * * *\"",
            1,
        ),
    )
    .unwrap();
    drop_file(&home);
    let _d = serve(&home);
    let results = home.import("acme", "sandbox").join("results");
    wait_for("the first result", 20, || {
        (result_files(&results) == 1).then_some(())
    });
    // The first delivery now hangs for 30 s; a second file is processed by the next pass anyway.
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    fs::write(
        home.pickup("acme", "sandbox").join("employees_2.json"),
        r#"[{"Mode": "update", "ExternalId": "E1", "FirstName": "Anne"}]"#,
    )
    .unwrap();
    wait_for("the second result", 20, || {
        (result_files(&results) == 2).then_some(())
    });
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (code, body)
}

fn have(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Missing tools skip a test locally; under CI (`CI` set) `.ci/run` installed them, so a missing
/// one fails.
fn require(ok: bool, what: &str) -> bool {
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{what} is missing (.ci/run installs it)"
        );
        eprintln!("skipped: {what} is not installed");
    }
    ok
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn metrics_pass_promtool_and_match_a_known_pass() {
    let mport = free_port();
    let sport = free_port();
    // acme's password is "demo" (the example config's hash).
    let home = home_with(
        &format!("password_hash = {DEMO_HASH:?}"),
        &ops_section(sport, mport, 1.0),
    );
    drop_file(&home);
    fs::write(home.pickup("beta", "sandbox").join("notes.txt"), "x").unwrap();
    let _d = serve(&home);
    let results = home.import("acme", "sandbox").join("results");
    wait_for("the result", 20, || {
        (result_files(&results) == 1).then_some(())
    });
    wait_for("/healthz", 10, || {
        std::panic::catch_unwind(|| http_get(mport, "/healthz"))
            .ok()
            .filter(|r| r.0 == 200)
    });
    let (code, ready) = http_get(mport, "/readyz");
    assert_eq!(code, 200, "{ready}");
    wait_for("a pass counted", 10, || {
        let r = http_get(mport, "/metrics");
        (metric(&r.1, "bulkload_passes_total") >= 1.0).then_some(())
    });
    // A file waiting (written after the pass; the next is an hour away), uploaded over SFTP
    // after one failed login.
    let sftp_ok = require(have("python3", &["-c", "import paramiko"]), "paramiko");
    if sftp_ok {
        let st = Command::new("python3")
            .arg("-c")
            .arg(PARAMIKO_UPLOAD)
            .arg(sport.to_string())
            .status()
            .unwrap();
        assert!(st.success(), "paramiko upload");
    } else {
        fs::write(home.pickup("acme", "production").join("loans.json"), "[]").unwrap();
    }
    let (code, text) = wait_for("the session closed", 10, || {
        let r = http_get(mport, "/metrics");
        (metric(&r.1, "bulkload_sftp_sessions") == 0.0).then_some(r)
    });
    if sftp_ok {
        let logins = |m: &str, o: &str| {
            metric(
                &text,
                &format!(r#"bulkload_sftp_logins_total{{method="{m}",outcome="{o}"}}"#),
            )
        };
        assert_eq!(logins("password", "success"), 1.0);
        assert_eq!(logins("password", "failure"), 1.0);
        assert_eq!(metric(&text, "bulkload_upload_bytes_total"), 2.0);
    }
    assert_eq!(code, 200);
    let l = r#"{env="sandbox",lender="acme""#;
    assert_eq!(
        metric(
            &text,
            &format!(r#"bulkload_loads_total{l},outcome="problems",source="SFTP"}}"#)
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            &format!(r#"bulkload_records_total{l},mode="create",outcome="success"}}"#)
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            &format!(r#"bulkload_records_total{l},mode="create",outcome="failure"}}"#)
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            &format!(r#"bulkload_records_total{l},mode="unknown",outcome="failure"}}"#)
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"bulkload_loads_total{env="sandbox",lender="beta",outcome="refused",source="SFTP"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"bulkload_pickup_files{env="production",lender="acme"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(&text, "bulkload_pass_duration_seconds_count"),
        metric(&text, "bulkload_passes_total")
    );
    assert_eq!(metric(&text, "bulkload_sftp_sessions"), 0.0);
    if require(
        have("promtool", &["--version"]),
        "promtool (Debian's prometheus)",
    ) {
        let mut p = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = p.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool: {}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn email_reaches_an_smtp_server_on_loopback() {
    // Debian's python3-aiosmtpd serves the system python (/usr/bin/python3), which may not be
    // the first python3 on PATH.
    let Some(python) = ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|p| have(p, &["-c", "import aiosmtpd"]))
    else {
        require(false, "python3-aiosmtpd");
        return;
    };
    let port = free_port();
    let spool = tempfile::tempdir().unwrap();
    let mut smtp = Daemon(
        Command::new(python)
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(spool.path().join("mbox"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the SMTP server", 10, || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    });
    let home = home_with(
        "notify_email = [\"ops@acme.example\"]",
        &format!("[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"bulkload@example.org\"\n"),
    );
    drop_file(&home);
    home.run();
    let (result_name, _) = result_json(&home);
    let mail = wait_for("the mail", 10, || {
        let p = spool.path().join("mbox").join("new");
        let f = fs::read_dir(&p).ok()?.flatten().next()?;
        fs::read_to_string(f.path()).ok()
    });
    assert!(mail.contains("To: ops@acme.example"), "{mail}");
    assert!(
        mail.contains("Subject: bulkload sandbox/acme: employees.json load 1"),
        "{mail}"
    );
    assert!(
        mail.contains("Content-Disposition: attachment")
            && mail.contains(&format!("=\"{result_name}\"")),
        "the result is attached: {mail}"
    );
    assert!(mail.contains("NumCreateSuccess: 1"), "{mail}");
    let _ = smtp.0.kill();
}

#[test]
fn retention_prunes_old_files_but_never_a_last_file() {
    let home = home_with(
        "",
        "[retention]\nprocessed_days = 7\nresults_days = 7\nproblems_days = 7\n",
    );
    let imp = home.import("acme", "sandbox");
    home.pickup("acme", "sandbox");
    for d in ["processed", "results"] {
        fs::create_dir_all(imp.join(d)).unwrap();
    }
    let old = [
        "processed/employees.last.json",
        "processed/employees.20200101000000000.json",
        "results/employees.20200101000000000.result.json",
    ];
    let new = ["processed/loans.20990101000000000.json"];
    for f in old.iter().chain(new.iter()) {
        fs::write(imp.join(f), "[]").unwrap();
    }
    for f in old {
        let st = Command::new("touch")
            .args(["-d", "30 days ago"])
            .arg(imp.join(f))
            .status()
            .unwrap();
        assert!(st.success());
    }
    let out = home.run_command().env("RUST_LOG", "info").output().unwrap();
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(imp.join(old[0]).exists(), "a .last file is never removed");
    assert!(!imp.join(old[1]).exists());
    assert!(!imp.join(old[2]).exists());
    assert!(imp.join(new[0]).exists());
    assert!(
        log.contains("retention: removed") && log.contains("employees.20200101000000000.json"),
        "{log}"
    );
    // Problems: a load with problems, made old, loses its problem rows on the next pass.
    drop_file(&home);
    home.run();
    let db = rusqlite::Connection::open(home.data.join("db/sandbox.sqlite3")).unwrap();
    let problems = || -> i64 {
        db.query_row("SELECT count(*) FROM load_problems", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(problems(), 2);
    db.execute(
        "UPDATE bulk_loads SET ended_at = '2000-01-01T00:00:00.000Z'",
        [],
    )
    .unwrap();
    let out = home.run_command().env("RUST_LOG", "info").output().unwrap();
    assert!(out.status.success());
    assert_eq!(problems(), 0);
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("retention: removed the problems of old loads"));
}

#[test]
fn json_logs_carry_the_structured_fields() {
    let home = home_with("", "[log]\nformat = \"json\"\n");
    drop_file(&home);
    let out = home.run_command().env("RUST_LOG", "info").output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8_lossy(&out.stderr)
        .lines()
        .find(|l| l.contains("file processed"))
        .expect("the per-file line")
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["env"], "sandbox");
    assert_eq!(v["lender"], "acme");
    assert_eq!(v["file"], "employees.json");
    assert_eq!(v["load"], 1);
    for k in [
        "created",
        "updated",
        "added",
        "deleted",
        "create_failed",
        "mode_failed",
    ] {
        assert!(v.get(k).is_some(), "{k}: {line}");
    }
    assert_eq!(v["create_failed"], 1);
    assert_eq!(v["mode_failed"], 1);
}

#[test]
fn status_reports_waiting_files_and_the_last_load() {
    let home = home_with("", "");
    drop_file(&home);
    home.run();
    fs::write(home.pickup("acme", "sandbox").join("loans.json"), "[]").unwrap();
    let out = Command::new(bin())
        .args(["status", "--json", "--config"])
        .arg(&home.config)
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let acme = v["lenders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["lender"] == "acme" && l["environment"] == "sandbox")
        .unwrap();
    assert_eq!(acme["waiting"]["files"], 1);
    assert_eq!(acme["last_load"]["id"], 1);
    assert_eq!(acme["last_load"]["counts"]["NumCreateSuccess"], 1);
    assert_eq!(v["pass_lock_held"], false);
    assert!(v["next_pass"].as_str().unwrap().ends_with(":00.000Z"));
    let table = Command::new(bin())
        .args(["status", "--config"])
        .arg(&home.config)
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&table.stdout);
    assert!(
        t.contains("next scheduled pass") && t.contains("1 employees.json"),
        "{t}"
    );
}

#[test]
fn config_check_names_keys_and_warns() {
    let check = |home: &Home| {
        Command::new(bin())
            .args(["config", "check", "--config"])
            .arg(&home.config)
            .output()
            .unwrap()
    };
    // The fixture's lenders have no password and no key: a warning each.
    let home = home_with("authorized_keys = \"missing.pub\"", "");
    let out = check(&home);
    assert_eq!(out.status.code(), Some(1));
    let o = String::from_utf8_lossy(&out.stdout);
    assert!(
        o.contains("missing.pub") && o.contains("does not exist"),
        "{o}"
    );
    assert!(
        o.contains("\"beta\" has neither password_hash nor authorized_keys"),
        "{o}"
    );

    let home = home_with("", "");
    let t = fs::read_to_string(&home.config).unwrap();
    fs::write(
        &home.config,
        t.replace(
            "settle_seconds = 0",
            "settle_seconds = 0\ncron = \"0 * * * *\"",
        ),
    )
    .unwrap();
    let out = check(&home);
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("[schedule] cron") && e.contains("six fields, seconds first"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "one error: {e}");

    let home = home_with("", "");
    let t = fs::read_to_string(&home.config).unwrap();
    fs::write(
        &home.config,
        t.replace(
            "settle_seconds = 0",
            "settle_seconds = 0\ncron = \"0 0 0 30 2 *\"",
        ),
    )
    .unwrap();
    let o = String::from_utf8_lossy(&check(&home).stdout).to_string();
    assert!(o.contains("never fires"), "{o}");

    let home = home_with("", "");
    let t = fs::read_to_string(&home.config).unwrap();
    let blocker = home.dir.path().join("file");
    fs::write(&blocker, "").unwrap();
    let bad = blocker.join("data");
    let t: String = t
        .lines()
        .map(|l| {
            if l.starts_with("data_dir") {
                format!("data_dir = {:?}", bad.display().to_string())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    fs::write(&home.config, t).unwrap();
    let out = check(&home);
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains(&bad.display().to_string()),
        "names the path: {e}"
    );

    let home = home_with("[[lenders.webhooks]]\nurl = \"ftp://x\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"", "");
    let e = String::from_utf8_lossy(&check(&home).stderr).to_string();
    assert!(e.contains("lender \"acme\": webhooks[0].url"), "{e}");
}

#[test]
fn a_delivery_given_up_is_marked_failed_and_counted() {
    let (url, got) = receiver(usize::MAX);
    let mport = free_port();
    let home = home_with(
        &webhook_cfg(&url),
        &ops_section(free_port(), mport, 0.3)
            .replace("[notify]\n", "[notify]\ngive_up_hours = 0.0003\n"),
    );
    drop_file(&home);
    let _d = serve(&home);
    let text = wait_for("a failed delivery", 20, || {
        let r = std::panic::catch_unwind(|| http_get(mport, "/metrics")).ok()?;
        (metric(
            &r.1,
            r#"bulkload_deliveries_total{channel="webhook",outcome="failed"}"#,
        ) == 1.0)
            .then_some(r.1)
    });
    let tries = got.lock().unwrap().len();
    assert!(tries >= 2, "retried before giving up: {tries}");
    assert_eq!(
        metric(
            &text,
            r#"bulkload_deliveries_total{channel="webhook",outcome="retry"}"#
        ) + 1.0,
        tries as f64
    );
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(got.lock().unwrap().len(), tries, "no try after giving up");
    let out = Command::new(bin())
        .args(["status", "--json", "--config"])
        .arg(&home.config)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["lenders"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["pending_notifications"] == 0));
}
