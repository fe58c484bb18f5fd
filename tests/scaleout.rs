//! Several daemons over one data folder and one PostgreSQL store (issue 14): three `bulkload
//! serve` processes share the work while lenders' files keep arriving and the daemons are
//! SIGKILLed and restarted at random. Afterwards the store, the result files and the
//! processed folders must equal those of one clean run over the same files: each file applied
//! exactly once, none lost, each lender's files in their order.
//!
//! Files arrive as a lender's script behind a load balancer sends them: through the SFTP server
//! of one of the daemons (each its own port), with the real OpenSSH `sftp` client; an upload to a
//! daemon that is down, or killed mid-upload, fails and is sent again to another daemon (a
//! partial upload never reaches `pickup/` as a complete file). Before re-sending, the script
//! looks whether the failed try landed after all (the daemon died after publishing the file,
//! before answering), as a careful lender does by listing its folders.
//!
//! The kills are drawn from a seed printed at the start (`BULKLOAD_CHAOS_SEED=<n>` replays a
//! run); the chaos lasts a bounded time, then the daemons are left to finish.

mod common;

use common::*;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LENDERS: usize = 6;
const FILES: usize = 8;
const RECORDS: usize = 40;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A small deterministic generator (xorshift): the chaos is replayable from its seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn lender(i: usize) -> String {
    format!("l{i}")
}

/// The config: six lenders of one division each (logging in with `key`), a pass every second.
fn config_text(data: &Path, url: &str, sftp_port: u16, key: &Path) -> String {
    let mut t = format!(
        "data_dir = {:?}\nenvironments = [\"sandbox\"]\n\n[schedule]\nsettle_seconds = 0\ncron = \"* * * * * *\"\n\n[sftp]\nlisten = \"127.0.0.1:{sftp_port}\"\nhost_key = {:?}\n\n[store]\nurl = \"{url}\"\nlease_seconds = 2\nparallel_lenders = 3\n\n",
        data.display().to_string(),
        data.join("host_key").display().to_string()
    );
    for i in 0..LENDERS {
        t.push_str(&format!(
            "[[lenders]]\nid = \"{}\"\nauthorized_keys = {:?}\n[[lenders.divisions]]\nthread_id = \"{:032x}\"\nsystem_name = \"main\"\neditable_name = \"Main\"\npositions = [\"AEA\"]\n\n",
            lender(i),
            key.with_extension("pub").display().to_string(),
            div_base() + i as u128
        ));
    }
    t
}

const fn div_base() -> u128 {
    0xd000_0000_0000_0000_0000_0000_0000_0000
}

/// File `k` of lender `l`: upserts of employees, later files updating earlier ones, and a few
/// refused records (problems are part of the state compared).
fn file(l: usize, k: usize) -> (String, String) {
    let mut s = String::from("[\n");
    for r in 0..RECORDS {
        if r > 0 {
            s.push_str(",\n");
        }
        let id = (k * 7 + r) % (RECORDS * 2);
        let email = if r % 13 == 5 {
            "not an email".to_string()
        } else {
            format!("e{id}@l{l}.test")
        };
        s.push_str(&format!(
            r#"{{"Mode": "upsert", "ExternalId": "E{id}", "FirstName": "File {k} record {r}", "Email": "{email}"}}"#
        ));
    }
    s.push_str("\n]\n");
    (format!("employees_{k:03}.json"), s)
}

/// Places a file as the SFTP server does: written beside, then renamed into `pickup/`.
fn upload(data: &Path, l: usize, k: usize) {
    let (name, body) = file(l, k);
    let pickup = data
        .join("lenders")
        .join(lender(l))
        .join("sandbox/import/pickup");
    fs::create_dir_all(&pickup).unwrap();
    let staging = data.join("staging");
    fs::create_dir_all(&staging).unwrap();
    let tmp = staging.join(format!("{}-{name}", lender(l)));
    fs::write(&tmp, body).unwrap();
    fs::rename(&tmp, pickup.join(name)).unwrap();
}

/// The key every lender logs in with (`key`, `key.pub`).
fn keygen(key: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(key)
        .output()
        .unwrap_or_else(|e| {
            panic!("ssh-keygen not runnable (openssh-client; .ci/run installs it): {e}")
        });
    assert!(out.status.success(), "ssh-keygen: {out:?}");
}

/// One try of sending file `k` of lender `l` to the daemon on `port` with `sftp -b`; true when
/// the client says it was stored. A try that hangs is given up after 20 s.
fn sftp_put(dir: &Path, key: &Path, port: u16, l: usize, k: usize) -> bool {
    let (name, body) = file(l, k);
    let local = dir.join(format!("out-{}-{name}", lender(l)));
    fs::write(&local, body).unwrap();
    let batch = dir.join(format!("batch-{}-{k}", lender(l)));
    fs::write(
        &batch,
        format!("put {} /sandbox/import/pickup/{name}\n", local.display()),
    )
    .unwrap();
    let mut child = sftp_key_batch(
        &batch,
        key,
        port,
        &lender(l),
        &["-o", "LogLevel=QUIET", "-o", "ConnectTimeout=5"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap_or_else(|e| panic!("sftp not runnable (openssh-client; .ci/run installs it): {e}"));
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        if t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether file `k` of lender `l` reached the lender's folders (looked at in the order a file
/// goes: pickup/, the claim in work/, processed/ and results/, so a file moving on is seen).
fn landed(data: &Path, l: usize, k: usize) -> bool {
    let (name, _) = file(l, k);
    let stem = format!("{}.", name.trim_end_matches(".json"));
    let import = data.join("lenders").join(lender(l)).join("sandbox/import");
    let dirs = [
        import.join("pickup"),
        data.join("work/sandbox").join(lender(l)),
        import.join("processed"),
        import.join("results"),
    ];
    dirs.iter().any(|d| {
        names(d)
            .iter()
            .any(|n| !n.starts_with('.') && (n == &name || n.contains(&stem)))
    })
}

/// A lender's script: sends its files in order at the planned times (ms from `start`), each to
/// a daemon drawn at random, re-sending a failed upload to the next daemon until one takes it.
/// Returns how many tries failed.
#[allow(clippy::too_many_arguments)]
fn lender_script(
    dir: &Path,
    data: &Path,
    key: &Path,
    ports: &[u16],
    l: usize,
    times: &[u64],
    seed: u64,
    start: Instant,
) -> usize {
    let mut rng = Rng(seed | 1);
    let mut failed = 0;
    for (k, &at) in times.iter().enumerate() {
        let due = start + Duration::from_millis(at);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let mut d = rng.below(ports.len() as u64) as usize;
        let t = Instant::now();
        loop {
            if sftp_put(dir, key, ports[d], l, k) {
                break;
            }
            failed += 1;
            if landed(data, l, k) {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "file {k} of {} could not be uploaded to any daemon for 60 s",
                lender(l)
            );
            d = (d + 1) % ports.len();
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    failed
}

struct Daemon {
    config: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    fn start(&mut self) {
        let child = Command::new(bin())
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_port(port: u16) {
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "daemon did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Loads finished, loads still applied (not finished), files waiting in pickup/ or work/.
fn progress(url: &str, data: &Path) -> (i64, i64, usize) {
    let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let (finished, applied) = match c.query_one(
        "SELECT count(*) FILTER (WHERE state = 'finished'), count(*) FILTER (WHERE state = 'applied')
         FROM bulkload_sandbox.bulk_loads",
        &[],
    ) {
        Ok(r) => (r.get(0), r.get(1)),
        Err(_) => (0, 0),
    };
    let mut waiting = 0;
    for l in 0..LENDERS {
        let home = data.join("lenders").join(lender(l)).join("sandbox");
        waiting += names(&home.join("import/pickup"))
            .iter()
            .filter(|n| !n.starts_with('.'))
            .count();
        waiting += names(&data.join("work/sandbox").join(lender(l))).len();
    }
    (finished, applied, waiting)
}

#[test]
fn three_daemons_killed_at_random_apply_every_file_exactly_once() {
    let seed: u64 = std::env::var("BULKLOAD_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("chaos seed: {seed} (replay with BULKLOAD_CHAOS_SEED={seed})");
    let mut rng = Rng(seed);

    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("lender_key");
    keygen(&key);

    // The reference: one clean run over every file at once.
    let reference = {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let url = pg_database();
        let config = dir.path().join("config.toml");
        fs::write(&config, config_text(&data, &url, free_port(), &key)).unwrap();
        for l in 0..LENDERS {
            for k in 0..FILES {
                upload(&data, l, k);
            }
        }
        let out = Command::new(bin())
            .args(["run", "--settle-seconds", "0", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (finished, applied, waiting) = progress(&url, &data);
        assert_eq!(
            (finished, applied, waiting),
            ((LENDERS * FILES) as i64, 0, 0)
        );
        snapshot_by_lender(&data)
    };

    // Three daemons over one data folder and one database.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = pg_database();
    let mut daemons = Vec::new();
    let mut ports = Vec::new();
    for d in 0..3 {
        let port = free_port();
        // The first is `config.toml`: the store dump finds the database through it.
        let config = match d {
            0 => dir.path().join("config.toml"),
            _ => dir.path().join(format!("daemon{d}.toml")),
        };
        fs::write(&config, config_text(&data, &url, port, &key)).unwrap();
        let mut daemon = Daemon {
            config,
            child: None,
        };
        daemon.start();
        // The first one creates the host key; the others read it.
        wait_port(port);
        daemons.push(daemon);
        ports.push(port);
    }

    // Uploads (each lender's files in order, at random moments, by SFTP to any daemon) and
    // kills, for a bounded time.
    let mut plans: Vec<Vec<u64>> = Vec::new(); // per lender: ms from start
    for _ in 0..LENDERS {
        let mut t = 0;
        plans.push(
            (0..FILES)
                .map(|_| {
                    t += 200 + rng.below(1500);
                    t
                })
                .collect(),
        );
    }
    let chaos = Duration::from_secs(20);
    let start = Instant::now();
    let mut kills = 0;
    let failed_tries = std::thread::scope(|s| {
        let scripts: Vec<_> = plans
            .iter()
            .enumerate()
            .map(|(l, times)| {
                let (dirp, data, key, ports) = (dir.path(), &data, &key, &ports);
                let seed = rng.next();
                s.spawn(move || lender_script(dirp, data, key, ports, l, times, seed, start))
            })
            .collect();
        let mut next_kill = Duration::from_millis(500 + rng.below(1500));
        let mut restarts: Vec<(Duration, usize)> = Vec::new();
        while start.elapsed() < chaos || scripts.iter().any(|h| !h.is_finished()) {
            let now = start.elapsed();
            if now >= next_kill && now < chaos {
                let d = rng.below(3) as usize;
                if daemons[d].child.is_some() {
                    daemons[d].kill();
                    kills += 1;
                    restarts.push((now + Duration::from_millis(300 + rng.below(1500)), d));
                }
                next_kill = now + Duration::from_millis(400 + rng.below(1600));
            }
            restarts.retain(|&(at, d)| {
                if now >= at {
                    daemons[d].start();
                    false
                } else {
                    true
                }
            });
            // After the chaos, every daemon serves (uploads still going on need one).
            if now >= chaos {
                for (_, d) in restarts.drain(..) {
                    daemons[d].start();
                }
                for d in daemons.iter_mut() {
                    if d.child.is_none() {
                        d.start();
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        scripts
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .sum::<usize>()
    });
    for d in daemons.iter_mut() {
        if d.child.is_none() {
            d.start();
        }
    }
    eprintln!("{failed_tries} upload tries failed and were sent again");
    assert!(kills >= 5, "only {kills} kills in the chaos phase");

    // Let the daemons finish: every file finished, nothing left in pickup/ or work/.
    let t = Instant::now();
    let want = (LENDERS * FILES) as i64;
    loop {
        let (finished, applied, waiting) = progress(&url, &data);
        if finished == want && applied == 0 && waiting == 0 {
            break;
        }
        assert!(
            finished <= want,
            "{finished} loads for {want} files: a file was applied twice"
        );
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "not finished after the chaos: {finished} finished, {applied} unfinished, {waiting} files waiting (seed {seed})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(daemons);
    eprintln!("{kills} kills; comparing with the clean run");
    let got = snapshot_by_lender(&data);
    if got != reference {
        let keep = std::env::temp_dir().join(format!("bulkload-chaos-{seed}"));
        let _ = fs::create_dir_all(&keep);
        let _ = fs::write(keep.join("clean.txt"), &reference);
        let _ = fs::write(keep.join("daemons.txt"), &got);
        eprintln!("both states written to {}", keep.display());
        let first = reference
            .lines()
            .zip(got.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| format!("line {}:\n  clean run: {a}\n  3 daemons: {b}", i + 1))
            .unwrap_or_else(|| "one is a prefix of the other".into());
        panic!("state differs from the clean run (seed {seed}):\n{first}");
    }
}
