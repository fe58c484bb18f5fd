//! The web console (issue 15), end to end: the real `bulkload serve` and a real headless
//! Chromium driven by Selenium (tests/console/journey.py: the whole journey of a lender and an
//! operator, axe-core on every page, screenshots into docs/console/ for docs/console.md).
//! This file sets up the daemon (two lenders, users with argon2 hashes, an operator with TOTP,
//! another lender's loads), runs the browser script and checks the store afterwards: the
//! uploads applied, the validation applied nothing.

mod common;

use common::*;
use rusqlite::Connection;
use std::fs;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const C: &str = "cccccccccccccccccccccccccccccccc";
/// The operator's TOTP key (base32, 160 bits).
const TOTP: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

fn config(data: &std::path::Path, sftp: u16, web: u16) -> String {
    let hash = |p: &str| bulkload::auth::hash_password(p).unwrap();
    format!(
        r#"data_dir = {data:?}
environments = ["sandbox", "production"]

[schedule]
settle_seconds = 0
on_upload = true
on_upload_delay_seconds = 0.2

[sftp]
listen = "127.0.0.1:{sftp}"

[api]
listen = "127.0.0.1:{web}"

[console]
public_host = "sftp.example.test"
api_base_url = "https://api.example.test"

[[lenders]]
id = "acme"
[[lenders.divisions]]
thread_id = "{A}"
system_name = "retail"
editable_name = "Retail Lending"
positions = ["AEA"]
[[lenders.users]]
email = "ann@acme.test"
password_hash = "{acme}"

[[lenders]]
id = "beta"
[[lenders.divisions]]
thread_id = "{C}"
system_name = "main"
editable_name = "Main"
positions = ["AEA"]
[[lenders.users]]
email = "bo@beta.test"
password_hash = "{beta}"

[[operators]]
email = "ops@platform.test"
password_hash = "{ops}"
totp_secret = "{TOTP}"
"#,
        data = data.display().to_string(),
        acme = hash("acme staff pw"),
        beta = hash("beta staff pw"),
        ops = hash("operator pw"),
    )
}

fn wait_port(port: u16, daemon: &mut Daemon) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = daemon.0.try_wait() {
            panic!("bulkload serve exited: {status}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the console did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn account_ids(data: &std::path::Path, lender: &str) -> Vec<String> {
    let conn = Connection::open(data.join("db/sandbox.sqlite3")).unwrap();
    let mut st = conn
        .prepare("SELECT external_id FROM accounts WHERE lender = ?1 ORDER BY external_id")
        .unwrap();
    st.query_map([lender], |r| r.get(0))
        .unwrap()
        .collect::<Result<Vec<String>, _>>()
        .unwrap()
}

fn max_load(data: &std::path::Path, lender: &str) -> i64 {
    let conn = Connection::open(data.join("db/sandbox.sqlite3")).unwrap();
    conn.query_row(
        "SELECT coalesce(max(number), 0) FROM bulk_loads WHERE lender = ?1",
        [lender],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn browser_journey_of_a_lender_and_an_operator() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (sftp, web) = (free_port(), free_port());
    let cfg_path = dir.path().join("config.toml");
    fs::write(&cfg_path, config(&data, sftp, web)).unwrap();

    // The other lender has more loads than acme will: its last load's number is a URL acme
    // could guess.
    let beta = data.join("lenders/beta/sandbox/import/pickup");
    fs::create_dir_all(&beta).unwrap();
    for i in 1..=8 {
        fs::write(
            beta.join(format!("employees_{i}.json")),
            format!(r#"[{{"Mode":"create","ExternalId":"BE{i}","Email":"be{i}@beta.test"}}]"#),
        )
        .unwrap();
    }
    let out = Command::new(bin())
        .args(["run", "--settle-seconds", "0", "--config"])
        .arg(&cfg_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let other = max_load(&data, "beta");
    assert_eq!(other, 8);

    let files = dir.path().join("files");
    fs::create_dir_all(&files).unwrap();
    fs::write(
        files.join("employees.json"),
        format!(
            r#"[{{"Mode":"create","ExternalId":"E1","FirstName":"Eve","Email":"e1@acme.test","DivisionThreadIds":["{A}"]}},
               {{"Mode":"create","ExternalId":"E2","FirstName":"Ed","Email":"e2@acme.test","DivisionThreadIds":["nope"]}}]"#
        ),
    )
    .unwrap();
    fs::write(
        files.join("borrowers.csv"),
        "Mode,ExternalId,FirstName,Email\r\n\
         create,B1,Ann,b1@acme.test\r\n\
         create,B2,\"Bob, Jr.\",not-an-email\r\n",
    )
    .unwrap();
    fs::write(
        files.join("employees_check.csv"),
        format!("Mode,ExternalId,Email,DivisionThreadIds.1\r\ncreate,V1,E1@ACME.test,{A}\r\n"),
    )
    .unwrap();
    fs::write(
        files.join("employees_nojs.json"),
        format!(
            r#"[{{"Mode":"create","ExternalId":"N1","Email":"n1@acme.test","DivisionThreadIds":["{A}"]}}]"#
        ),
    )
    .unwrap();

    let mut daemon = Daemon(
        Command::new(bin())
            .arg("serve")
            .arg("--config")
            .arg(&cfg_path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    wait_port(web, &mut daemon);

    let shots = repo().join("docs/console");
    let work = dir.path().join("work");
    fs::create_dir_all(&work).unwrap();
    let out = Command::new("python3")
        .arg(repo().join("tests/console/journey.py"))
        .env("CONSOLE_URL", format!("http://127.0.0.1:{web}"))
        .env("LENDER_EMAIL", "ann@acme.test")
        .env("LENDER_PASSWORD", "acme staff pw")
        .env("OPERATOR_EMAIL", "ops@platform.test")
        .env("OPERATOR_PASSWORD", "operator pw")
        .env("OPERATOR_TOTP", TOTP)
        .env("FILES", &files)
        .env("OTHER_LOAD", other.to_string())
        .env("SHOTS", &shots)
        .env("WORK", &work)
        .output()
        .expect(
            "python3 runs (CI installs selenium, axe-selenium-python, chromium, chromium-driver)",
        );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser journey failed\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("checks passed"), "{stdout}");

    // The uploads applied (the fixed borrower included); the validation applied nothing.
    assert_eq!(
        account_ids(&data, "acme"),
        ["B1", "B2", "E1", "N1"],
        "acme's accounts after the journey"
    );
    assert!(max_load(&data, "acme") < other);
    assert!(
        fs::read_dir(data.join("lenders/acme/sandbox/import/validate"))
            .unwrap()
            .next()
            .is_none(),
        "validate/ emptied"
    );
    for page in [
        "signin",
        "loads",
        "upload",
        "load",
        "problem",
        "validate",
        "validation-result",
        "downloads",
        "connect",
        "not-found",
        "phone",
        "totp",
        "operator",
        "operator-logins",
        "operator-deliveries",
    ] {
        assert!(
            shots.join(format!("{page}.png")).is_file(),
            "screenshot of {page}"
        );
    }
}

/// One HTTP/1.1 request over a plain socket: (status, raw head, body).
fn http(port: u16, method: &str, path: &str, headers: &str, body: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// The sign-in form's CSRF cookie and token.
fn login_token(port: u16) -> String {
    let (status, head, _) = http(port, "GET", "/console/login", "", "");
    assert_eq!(status, 200);
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: bulkload_login_csrf="))
        .expect("a CSRF cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    cookie.split(';').next().unwrap().to_string()
}

/// Headers of a sign-in POST carrying the CSRF cookie `token`.
fn form_headers(token: &str) -> String {
    format!(
        "Content-Type: application/x-www-form-urlencoded\r\nCookie: bulkload_login_csrf={token}\r\n"
    )
}

#[test]
fn failed_sign_ins_ban_the_address_for_sftp_too() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (sftp, web) = (free_port(), free_port());
    let cfg_path = dir.path().join("config.toml");
    let cfg = config(&data, sftp, web).replace(
        "[sftp]\n",
        "[sftp]\nmax_login_failures = 3\nban_seconds = 60\n",
    );
    fs::write(&cfg_path, cfg).unwrap();
    let mut daemon = Daemon(
        Command::new(bin())
            .arg("serve")
            .arg("--config")
            .arg(&cfg_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(web, &mut daemon);
    wait_port(sftp, &mut daemon);

    // Before: the SFTP port greets with its banner.
    let banner = |port: u16| {
        use std::io::Read;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 4];
        matches!(s.read(&mut b), Ok(4)) && &b == b"SSH-"
    };
    assert!(banner(sftp));

    // A sign-in without the form's token is refused before any password check.
    let (status, _, _) = http(
        web,
        "POST",
        "/console/login",
        "Content-Type: application/x-www-form-urlencoded\r\n",
        "email=ann%40acme.test&password=x",
    );
    assert_eq!(status, 403);

    let mut statuses = Vec::new();
    for _ in 0..3 {
        let token = login_token(web);
        let (status, _, _) = http(
            web,
            "POST",
            "/console/login",
            &form_headers(&token),
            &format!("csrf={token}&email=ann%40acme.test&password=wrong"),
        );
        statuses.push(status);
    }
    assert_eq!(
        statuses,
        [401, 401, 429],
        "the third failure bans the address"
    );
    // The same defender: SFTP now drops the address before its banner.
    assert!(!banner(sftp), "SFTP refuses the banned address");
    // And the right password no longer opens the console.
    let token = login_token(web);
    let (status, head, _) = http(
        web,
        "POST",
        "/console/login",
        &form_headers(&token),
        &format!("csrf={token}&email=ann%40acme.test&password=acme+staff+pw"),
    );
    assert_eq!(status, 429, "{head}");
    assert!(!head.contains("bulkload_session="), "{head}");
}
