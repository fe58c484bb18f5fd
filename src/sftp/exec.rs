//! The only commands a session may run: `md5sum`, `sha1sum` and `sha256sum` of the lender's own
//! files, answered in-process the way GNU coreutils print (`<hex>  <path>`), so that rclone can
//! verify uploads and compare files (`rclone check`, `moveto`).
//!
//! Owns: splitting the command line (POSIX-shell quoting: rclone backslash-escapes paths),
//! resolving the path through the chroot resolver (no symbolic link, nothing outside the home,
//! hidden names refused), hashing on a blocking thread with bounds (size: the upload limit;
//! time: `HASH_TIMEOUT`; at most `MAX_HASHES` at once in the daemon), and hashing standard input
//! (bounded) when no file is named, which is how rclone probes for the command.
//! Must not: run a program, read outside the home, or hash without bounds.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::fs::real_path;
use super::path::{resolve, VirtualPath};

/// Longest a hash may take; then the command fails (exit status 1).
pub const HASH_TIMEOUT: Duration = Duration::from_secs(120);
/// Hashes running at once in the daemon (each reads a file on a blocking thread).
pub const MAX_HASHES: usize = 2;
/// Most bytes of standard input hashed (`md5sum` with no file).
pub const MAX_STDIN: usize = 1 << 20;
/// Longest command line accepted.
const MAX_COMMAND: usize = 8192;
/// Uploads up to this size have their hashes kept a while after they are published.
pub const RECENT_MAX_BYTES: u64 = 16 << 20;
/// How long those hashes are kept.
const RECENT_TTL: Duration = Duration::from_secs(300);
/// Most hashes kept.
const RECENT_MAX: usize = 10_000;

/// The md5, sha1 and sha256 of an upload.
pub type AllHashes = [String; 3];

/// Hashes of small uploads, by lender and virtual path, for a while after they were published:
/// rclone verifies an upload by `md5sum` right after closing it, and a pass may have taken the
/// file by then. Without an answer rclone counts the transfer failed and sends the file again
/// (imported twice).
type RecentMap = std::collections::HashMap<(String, String), (std::time::Instant, AllHashes)>;

#[derive(Clone, Default)]
pub struct RecentHashes(Arc<std::sync::Mutex<RecentMap>>);

impl RecentHashes {
    pub fn insert(&self, lender: &str, vpath: &str, h: AllHashes) {
        let now = std::time::Instant::now();
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= RECENT_MAX {
            m.retain(|_, (t, _)| now.duration_since(*t) < RECENT_TTL);
            if m.len() >= RECENT_MAX {
                m.clear();
            }
        }
        m.insert((lender.to_string(), vpath.to_string()), (now, h));
    }

    fn get(&self, lender: &str, vpath: &str, kind: HashKind) -> Option<String> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (t, h) = m.get(&(lender.to_string(), vpath.to_string()))?;
        if t.elapsed() >= RECENT_TTL {
            return None;
        }
        Some(
            match kind {
                HashKind::Md5 => &h[0],
                HashKind::Sha1 => &h[1],
                HashKind::Sha256 => &h[2],
            }
            .clone(),
        )
    }
}

/// The three hashes of the file at `path` (blocking); `None` when it cannot be read.
pub fn hash_all(path: &Path) -> Option<AllHashes> {
    let mut f = crate::fsutil::open_nofollow(path).ok()?;
    let mut hs = [
        Hasher::new(HashKind::Md5),
        Hasher::new(HashKind::Sha1),
        Hasher::new(HashKind::Sha256),
    ];
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hs.iter_mut().for_each(|h| h.update(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    let [a, b, c] = hs;
    Some([a.hex(), b.hex(), c.hex()])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKind {
    Md5,
    Sha1,
    Sha256,
}

/// A command a session may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashCommand {
    pub kind: HashKind,
    /// The file to hash, as the client wrote it; `None`: standard input.
    pub path: Option<String>,
}

/// Splits a command line as a POSIX shell would (quotes, backslashes), without expansions.
/// `None` when quotes do not close.
pub fn split_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                in_word = true;
                match chars.next() {
                    // A backslash-newline is a line continuation.
                    Some('\n') => {}
                    Some(n) => cur.push(n),
                    None => cur.push('\\'),
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        x => cur.push(x),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            x @ ('"' | '\\' | '$' | '`') => cur.push(x),
                            '\n' => {}
                            x => {
                                cur.push('\\');
                                cur.push(x);
                            }
                        },
                        x => cur.push(x),
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Some(words)
}

/// The hash command `line` asks for, or `None` for anything else (refused).
pub fn parse(line: &[u8]) -> Option<HashCommand> {
    if line.len() > MAX_COMMAND {
        return None;
    }
    let words = split_words(std::str::from_utf8(line).ok()?)?;
    let kind = match words.first()?.as_str() {
        "md5sum" => HashKind::Md5,
        "sha1sum" => HashKind::Sha1,
        "sha256sum" => HashKind::Sha256,
        _ => return None,
    };
    match &words[1..] {
        [] => Some(HashCommand { kind, path: None }),
        [p] if p != "-" && !p.starts_with('-') => Some(HashCommand {
            kind,
            path: Some(p.clone()),
        }),
        [p] if p == "-" => Some(HashCommand { kind, path: None }),
        _ => None,
    }
}

/// An incremental hash of one kind.
pub enum Hasher {
    Md5(md5::Context),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl Hasher {
    pub fn new(kind: HashKind) -> Self {
        use sha2::Digest;
        match kind {
            HashKind::Md5 => Hasher::Md5(md5::Context::new()),
            HashKind::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            HashKind::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        use sha2::Digest;
        match self {
            Hasher::Md5(h) => h.consume(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
        }
    }

    pub fn hex(self) -> String {
        use sha2::Digest;
        let bytes: Vec<u8> = match self {
            Hasher::Md5(h) => h.finalize().0.to_vec(),
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The daemon-wide bound on hashes running at once.
pub fn hash_slots() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(MAX_HASHES))
}

/// What a hash command answers: standard output and exit status 0, or a message for standard
/// error and exit status 1.
pub type Answer = Result<String, String>;

/// Hashes the file `path` names in the lender's home (`home`), at most `max_bytes` long; a
/// file the lender uploaded lately and a pass has taken since is answered from `recent`.
/// Blocking: run it on a blocking thread.
pub fn hash_file(
    home: &Path,
    kind: HashKind,
    path: &str,
    max_bytes: u64,
    recent: Option<(&RecentHashes, &str)>,
) -> Answer {
    let refuse = |why: &str| Err(format!("{path}: {why}\n"));
    let Ok(v) = resolve(path, &VirtualPath::root()) else {
        return refuse("Permission denied");
    };
    if v.file_name()
        .is_some_and(|n| n.starts_with('.') || super::fs::is_upload_temp_name(n))
    {
        return refuse("Permission denied");
    }
    let gone = || match recent.and_then(|(r, lender)| r.get(lender, &v.to_string(), kind)) {
        Some(h) => Ok(format!("{h}  {v}\n")),
        None => refuse("No such file or directory"),
    };
    let real = match real_path(home, &v, true) {
        Ok(r) => r,
        Err(e) if e.status_code == russh_sftp::protocol::StatusCode::NoSuchFile => return gone(),
        Err(_) => return refuse("Permission denied"),
    };
    let file = match crate::fsutil::open_nofollow(&real) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return gone(),
        Err(_) => return refuse("Permission denied"),
    };
    match file.metadata() {
        Ok(m) if !m.is_file() => return refuse("Is a directory"),
        Ok(m) if m.len() > max_bytes => return refuse("File too large"),
        Ok(_) => {}
        Err(_) => return refuse("Permission denied"),
    }
    let mut h = Hasher::new(kind);
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    let mut file = file;
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                total += n as u64;
                if total > max_bytes {
                    return refuse("File too large");
                }
                h.update(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return refuse("Input/output error"),
        }
    }
    Ok(format!("{}  {}\n", h.hex(), v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words() {
        let w = |s: &str| split_words(s).unwrap();
        assert_eq!(w("md5sum /a\\ b/c"), vec!["md5sum", "/a b/c"]);
        assert_eq!(w("md5sum '/a b'"), vec!["md5sum", "/a b"]);
        assert_eq!(w("sha1sum \"/a \\\"b\\\"\""), vec!["sha1sum", "/a \"b\""]);
        assert_eq!(w("  md5sum  "), vec!["md5sum"]);
        assert!(split_words("md5sum 'x").is_none());
    }

    #[test]
    fn commands() {
        assert_eq!(
            parse(b"md5sum"),
            Some(HashCommand {
                kind: HashKind::Md5,
                path: None
            })
        );
        assert_eq!(
            parse(b"sha256sum /sandbox/import/results/a\\ b.json"),
            Some(HashCommand {
                kind: HashKind::Sha256,
                path: Some("/sandbox/import/results/a b.json".into())
            })
        );
        for refused in [
            &b"echo ${ShellId}%ComSpec%"[..],
            b"md5sum a b",
            b"md5sum --check x",
            b"sh -c md5sum",
            b"md5sum; rm -rf /",
            b"",
        ] {
            assert_eq!(
                parse(refused),
                None,
                "{:?}",
                String::from_utf8_lossy(refused)
            );
        }
    }

    #[test]
    fn hashes_like_coreutils() {
        let empty = |k| Hasher::new(k).hex();
        assert_eq!(empty(HashKind::Md5), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(
            empty(HashKind::Sha1),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
        assert_eq!(
            empty(HashKind::Sha256),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let top = tempfile::tempdir().unwrap();
        let home = top.path().join("home");
        let results = home.join("sandbox/import/results");
        std::fs::create_dir_all(&results).unwrap();
        std::fs::write(results.join("a.json"), b"abc").unwrap();
        std::fs::write(top.path().join("secret"), b"x").unwrap();
        std::os::unix::fs::symlink(top.path().join("secret"), results.join("l")).unwrap();
        assert_eq!(
            hash_file(
                &home,
                HashKind::Md5,
                "/sandbox/import/results/a.json",
                10,
                None
            )
            .unwrap(),
            "900150983cd24fb0d6963f7d28e17f72  /sandbox/import/results/a.json\n"
        );
        assert!(hash_file(
            &home,
            HashKind::Md5,
            "/sandbox/import/results/a.json",
            2,
            None
        )
        .is_err());
        assert!(hash_file(&home, HashKind::Md5, "/../secret", 10, None).is_err());
        assert!(hash_file(&home, HashKind::Md5, "/sandbox/import/results/l", 10, None).is_err());
        assert!(hash_file(&home, HashKind::Md5, "/sandbox/import/results", 10, None).is_err());
        let e = hash_file(&home, HashKind::Md5, "/sandbox/import/results/x", 10, None).unwrap_err();
        assert!(e.contains("No such file"), "{e}");
        // A file uploaded lately and taken by a pass since: answered from what was kept.
        let recent = RecentHashes::default();
        let p = "/sandbox/import/pickup/gone.json";
        recent.insert("demo", p, ["m".into(), "s1".into(), "s256".into()]);
        assert_eq!(
            hash_file(&home, HashKind::Sha1, p, 10, Some((&recent, "demo"))).unwrap(),
            format!("s1  {p}\n")
        );
        assert!(hash_file(&home, HashKind::Sha1, p, 10, Some((&recent, "other"))).is_err());
    }
}
