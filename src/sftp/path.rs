//! The chroot path resolver: a lender's virtual namespace and what each place in it allows.
//!
//! Owns: turning a path a client sent (absolute or relative to a virtual folder) into a
//! normalised `VirtualPath`, mapping it under the lender's home, and the permission rule
//! (which virtual paths are writable upload targets).
//! Must not: touch the file system (it is pure, so it can be fuzzed), or ever produce a real
//! path outside the home it was given.
//!
//! **Invariant:** `VirtualPath::to_real(home)` is `home` joined with plain, non-empty
//! components that contain no `/`, no NUL and no control character, and that are never `.`
//! or `..`, so it can only name `home` or something below it (symbolic links are the
//! file-system layer's job: it refuses to follow them). Only the last name may be hidden
//! (start with `.`), and only directly in an upload folder (`/<env>/import/pickup/` or
//! `/<env>/import/validate/`): clients such as lftp upload to a hidden temporary name there
//! and rename it when done (passes ignore hidden names).

use std::fmt;
use std::path::{Path, PathBuf};

/// The folders of `{environment}/import/` a lender may upload into.
pub const UPLOAD_FOLDERS: [&str; 2] = ["pickup", "validate"];

/// Longest path a client may send, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest single name, in bytes (the usual file-system limit).
pub const MAX_NAME_BYTES: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path contains a NUL byte")]
    Nul,
    #[error("the path contains a control character")]
    Control,
    #[error("the path is too long")]
    TooLong,
    /// Not UTF-8, or containing U+FFFD: russh-sftp decodes invalid UTF-8 lossily, so a
    /// replacement character is what invalid bytes arrive as.
    #[error("names must be valid UTF-8 (U+FFFD, what invalid bytes decode to, is refused too)")]
    NotUtf8,
    /// Bidirectional overrides and invisible formatting characters make a name display as
    /// another one (`invoice\u{202E}nosj.exe`).
    #[error("names must not contain bidirectional-control or invisible formatting characters")]
    Bidi,
    /// A name starting with `.`: hidden names (upload temporaries, lookups being written) are
    /// not part of a lender's namespace.
    #[error("hidden names are not accessible")]
    Hidden,
}

/// A normalised path in a lender's namespace: `/` followed by plain names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VirtualPath {
    parts: Vec<String>,
}

impl VirtualPath {
    /// The lender's `/`.
    pub fn root() -> Self {
        VirtualPath::default()
    }

    pub fn parts(&self) -> &[String] {
        &self.parts
    }

    pub fn is_root(&self) -> bool {
        self.parts.is_empty()
    }

    /// The last name, if any.
    pub fn file_name(&self) -> Option<&str> {
        self.parts.last().map(String::as_str)
    }

    /// The folder holding this path (the root's parent is the root).
    pub fn parent(&self) -> VirtualPath {
        let mut parts = self.parts.clone();
        parts.pop();
        VirtualPath { parts }
    }

    /// This path with one more (already checked) name.
    pub fn child(&self, name: &str) -> Result<VirtualPath, PathError> {
        check_name(name)?;
        let mut parts = self.parts.clone();
        parts.push(name.to_string());
        Ok(VirtualPath { parts })
    }

    /// The real path under `home`.
    pub fn to_real(&self, home: &Path) -> PathBuf {
        let mut p = home.to_path_buf();
        for part in &self.parts {
            p.push(part);
        }
        p
    }

    /// The real paths of `home` and of each prefix of this path, shortest first: what the
    /// file-system layer checks for symbolic links.
    pub fn real_prefixes(&self, home: &Path) -> Vec<PathBuf> {
        let mut out = Vec::with_capacity(self.parts.len() + 1);
        let mut p = home.to_path_buf();
        out.push(p.clone());
        for part in &self.parts {
            p.push(part);
            out.push(p.clone());
        }
        out
    }

    /// True for `/<env>/import/pickup/<name>` with `env` one of `environments`.
    pub fn is_pickup_file(&self, environments: &[String]) -> bool {
        matches!(self.parts.as_slice(),
            [env, import, pickup, _name]
                if environments.iter().any(|e| e == env) && import == "import" && pickup == "pickup")
    }

    /// For `/<env>/import/<folder>/<name>` with `folder` an upload folder (`pickup`,
    /// `validate`) and `env` one of `environments`: the folder. The only places a lender may
    /// create, write, rename or remove a file.
    pub fn upload_folder(&self, environments: &[String]) -> Option<&str> {
        match self.parts.as_slice() {
            [env, import, folder, _name]
                if environments.iter().any(|e| e == env)
                    && import == "import"
                    && UPLOAD_FOLDERS.contains(&folder.as_str()) =>
            {
                Some(folder)
            }
            _ => None,
        }
    }

    /// True for `/<env>/import/<upload folder>` itself.
    pub fn is_upload_dir(&self, environments: &[String]) -> bool {
        matches!(self.parts.as_slice(),
            [env, import, folder]
                if environments.iter().any(|e| e == env) && import == "import" && UPLOAD_FOLDERS.contains(&folder.as_str()))
    }

    /// True when the last name is hidden (only possible directly in an upload folder).
    pub fn is_hidden(&self) -> bool {
        self.file_name().is_some_and(|n| n.starts_with('.'))
    }

    /// True for `/<env>/import/pickup` itself.
    pub fn is_pickup_dir(&self, environments: &[String]) -> bool {
        matches!(self.parts.as_slice(),
            [env, import, pickup]
                if environments.iter().any(|e| e == env) && import == "import" && pickup == "pickup")
    }
}

impl fmt::Display for VirtualPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.parts.is_empty() {
            return f.write_str("/");
        }
        for part in &self.parts {
            write!(f, "/{part}")?;
        }
        Ok(())
    }
}

/// Bidirectional controls (U+061C, U+200E/F, U+202A–U+202E, U+2066–U+2069), zero-width and
/// invisible characters (U+200B–U+200D, U+2060–U+2064, U+FEFF), and the line and paragraph
/// separators U+2028/U+2029.
pub fn is_bidi_or_invisible(c: char) -> bool {
    matches!(c,
        '\u{061C}'
        | '\u{200B}'..='\u{200F}'
        | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}'
        | '\u{FEFF}')
}

fn check_name(name: &str) -> Result<(), PathError> {
    check_plain(name)?;
    if name.starts_with('.') {
        return Err(PathError::Hidden);
    }
    Ok(())
}

/// Every rule of `check_name` but the hidden-name one.
fn check_plain(name: &str) -> Result<(), PathError> {
    if name.contains('\0') {
        return Err(PathError::Nul);
    }
    if name.chars().any(char::is_control) {
        return Err(PathError::Control);
    }
    if name.contains('\u{FFFD}') {
        return Err(PathError::NotUtf8);
    }
    if name.chars().any(is_bidi_or_invisible) {
        return Err(PathError::Bidi);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(PathError::TooLong);
    }
    if name == "." || name == ".." || name.contains('/') || name.is_empty() {
        return Err(PathError::Hidden);
    }
    Ok(())
}

/// True when `parts` is `<env>/import/<upload folder>` (any `env`: the file-system layer
/// checks it against the configured environments).
fn in_upload_folder(parts: &[String]) -> bool {
    matches!(parts, [_, import, folder] if import == "import" && UPLOAD_FOLDERS.contains(&folder.as_str()))
}

/// Resolves `requested` (absolute, or relative to `cwd`) lexically: `.` and empty names are
/// dropped, `..` goes up one level and never above `/`. Hidden names, NUL, control characters
/// and over-long paths are refused.
pub fn resolve(requested: &str, cwd: &VirtualPath) -> Result<VirtualPath, PathError> {
    if requested.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    if requested.contains('\0') {
        return Err(PathError::Nul);
    }
    let mut parts = if requested.starts_with('/') {
        Vec::new()
    } else {
        cwd.parts.clone()
    };
    for part in requested.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name => {
                check_plain(name)?;
                parts.push(name.to_string());
            }
        }
    }
    // A hidden name only as the last name, directly in an upload folder (whether it came from
    // the request or from `cwd`).
    for (i, part) in parts.iter().enumerate() {
        if part.starts_with('.') && !(i + 1 == parts.len() && in_upload_folder(&parts[..i])) {
            return Err(PathError::Hidden);
        }
    }
    // The result is bounded too: a relative request is resolved against `cwd`, so a request
    // within the bound could otherwise give a path that is refused when sent back (fuzz finding,
    // fuzz/README.md).
    if parts.iter().map(|p| p.len() + 1).sum::<usize>() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    Ok(VirtualPath { parts })
}

/// `resolve` for raw bytes as they come off the wire: non-UTF-8 is refused.
pub fn resolve_bytes(requested: &[u8], cwd: &VirtualPath) -> Result<VirtualPath, PathError> {
    let s = std::str::from_utf8(requested).map_err(|_| PathError::NotUtf8)?;
    resolve(s, cwd)
}

#[cfg(test)]
mod tests {

    #[test]
    fn resolved_path_longer_than_limit_is_refused() {
        // The fuzz finding: 17 names of 240 bytes joined by `/` (4096 bytes) resolved against
        // the root give a 4097-byte path.
        let request = vec!["a".repeat(240); 17].join("/");
        assert_eq!(request.len(), MAX_PATH_BYTES);
        let root = resolve("/", &resolve("/", &VirtualPath { parts: vec![] }).unwrap()).unwrap();
        assert_eq!(resolve(&request, &root), Err(PathError::TooLong));
        let shorter = vec!["a".repeat(240); 16].join("/");
        let ok = resolve(&shorter, &root).unwrap();
        assert_eq!(resolve(&format!("/{shorter}"), &root).unwrap(), ok);
    }

    use super::*;

    fn r(p: &str) -> Result<String, PathError> {
        resolve(p, &VirtualPath::root()).map(|v| v.to_string())
    }

    #[test]
    fn refuses_replacement_bidi_and_invisible_characters() {
        assert_eq!(r("/a\u{FFFD}.json"), Err(PathError::NotUtf8));
        for c in [
            '\u{202E}', '\u{202A}', '\u{2066}', '\u{2069}', '\u{200E}', '\u{200F}', '\u{200B}',
            '\u{FEFF}', '\u{061C}', '\u{2028}',
        ] {
            assert_eq!(
                r(&format!("/x{c}nosj.exe")),
                Err(PathError::Bidi),
                "{:?}",
                c
            );
        }
        assert_eq!(r("/a\u{7}b"), Err(PathError::Control));
        assert_eq!(r("/a\u{85}b"), Err(PathError::Control));
        assert_eq!(
            r("/prêt-à-porter ü 日本.json").unwrap(),
            "/prêt-à-porter ü 日本.json"
        );
        assert_eq!(
            resolve_bytes(b"/a\xff.json", &VirtualPath::root()),
            Err(PathError::NotUtf8)
        );
    }

    #[test]
    fn normalises_dots_and_slashes() {
        assert_eq!(r("").unwrap(), "/");
        assert_eq!(r(".").unwrap(), "/");
        assert_eq!(r("/").unwrap(), "/");
        assert_eq!(
            r("//sandbox///import/./pickup/").unwrap(),
            "/sandbox/import/pickup"
        );
        assert_eq!(
            r("sandbox/import/../import/results").unwrap(),
            "/sandbox/import/results"
        );
    }

    #[test]
    fn never_goes_above_root() {
        assert_eq!(r("..").unwrap(), "/");
        assert_eq!(r("/../../etc/passwd").unwrap(), "/etc/passwd");
        assert_eq!(r("sandbox/../../../../other").unwrap(), "/other");
        let home = Path::new("/data/lenders/demo");
        let v = resolve("/../../../etc/shadow", &VirtualPath::root()).unwrap();
        assert!(v.to_real(home).starts_with(home));
    }

    #[test]
    fn hidden_cwd_never_becomes_a_folder() {
        let cwd = resolve("/sandbox/import/pickup/.in.a", &VirtualPath::root()).unwrap();
        assert_eq!(resolve("b", &cwd), Err(PathError::Hidden));
        assert_eq!(
            resolve("../b", &cwd).unwrap().to_string(),
            "/sandbox/import/pickup/b"
        );
    }

    #[test]
    fn relative_to_cwd() {
        let cwd = resolve("/sandbox/import", &VirtualPath::root()).unwrap();
        assert_eq!(
            resolve("pickup/a.json", &cwd).unwrap().to_string(),
            "/sandbox/import/pickup/a.json"
        );
        assert_eq!(resolve("../../..", &cwd).unwrap().to_string(), "/");
        assert_eq!(resolve("/x", &cwd).unwrap().to_string(), "/x");
    }

    #[test]
    fn refuses_odd_input() {
        assert_eq!(r("a\0b"), Err(PathError::Nul));
        assert_eq!(r("a\nb"), Err(PathError::Control));
        assert_eq!(r("a\u{7f}"), Err(PathError::Control));
        assert_eq!(
            r("/sandbox/import/results/.hidden.part"),
            Err(PathError::Hidden)
        );
        assert_eq!(r("/sandbox/.x/pickup/a"), Err(PathError::Hidden));
        assert_eq!(r("/sandbox/import/pickup/.x/a"), Err(PathError::Hidden));
        // Hidden names directly in an upload folder are a client's temporary files.
        assert_eq!(
            r("/sandbox/import/pickup/.in.a.json").unwrap(),
            "/sandbox/import/pickup/.in.a.json"
        );
        assert_eq!(
            r("/sandbox/import/validate/.a.part").unwrap(),
            "/sandbox/import/validate/.a.part"
        );
        assert_eq!(r("/...").unwrap_err(), PathError::Hidden);
        assert_eq!(r(&"a".repeat(256)), Err(PathError::TooLong));
        assert_eq!(r(&"a/".repeat(3000)), Err(PathError::TooLong));
        assert_eq!(
            resolve_bytes(b"/sandbox/\xff", &VirtualPath::root()),
            Err(PathError::NotUtf8)
        );
        // A backslash is an ordinary character on Unix, never a separator.
        assert_eq!(r("a\\..\\etc").unwrap(), "/a\\..\\etc");
        assert_eq!(r("..\\etc"), Err(PathError::Hidden));
    }

    #[test]
    fn pickup_rule() {
        let envs = vec!["sandbox".to_string(), "production".to_string()];
        let p = |s: &str| resolve(s, &VirtualPath::root()).unwrap();
        assert!(p("/sandbox/import/pickup/a.json").is_pickup_file(&envs));
        assert!(p("/production/import/pickup/a.json").is_pickup_file(&envs));
        assert!(!p("/sandbox/import/pickup").is_pickup_file(&envs));
        assert!(p("/sandbox/import/pickup").is_pickup_dir(&envs));
        assert!(!p("/sandbox/import/pickup/sub/a.json").is_pickup_file(&envs));
        assert!(!p("/sandbox/import/results/a.json").is_pickup_file(&envs));
        assert!(!p("/staging/import/pickup/a.json").is_pickup_file(&envs));
        assert!(!p("/sandbox/import/pickup/../results/a.json").is_pickup_file(&envs));
        assert_eq!(
            p("/sandbox/import/validate/a.json").upload_folder(&envs),
            Some("validate")
        );
        assert_eq!(
            p("/sandbox/import/pickup/a.json").upload_folder(&envs),
            Some("pickup")
        );
        assert_eq!(
            p("/sandbox/import/results/a.json").upload_folder(&envs),
            None
        );
        assert_eq!(
            p("/staging/import/pickup/a.json").upload_folder(&envs),
            None
        );
        assert!(p("/sandbox/import/validate").is_upload_dir(&envs));
        assert!(!p("/sandbox/import/lookups").is_upload_dir(&envs));
    }

    /// A cheap stand-in for the fuzz target: many generated paths built from the characters
    /// that matter never map outside the home.
    #[test]
    fn generated_paths_never_escape() {
        let alphabet = ['/', '.', '.', 'a', '\\', '\0', '\n', 'é', '~'];
        let home = Path::new("/h/lenders/demo");
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut p = String::new();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 24) as usize;
            let mut y = x;
            for _ in 0..len {
                y = y
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                p.push(alphabet[(y >> 33) as usize % alphabet.len()]);
            }
            if let Ok(v) = resolve(&p, &VirtualPath::root()) {
                let real = v.to_real(home);
                assert!(real.starts_with(home), "{p:?} -> {}", real.display());
                let n = v.parts().len();
                assert!(
                    v.parts().iter().enumerate().all(|(i, x)| !x.contains('/')
                        && x != "."
                        && x != ".."
                        && (!x.starts_with('.')
                            || (i + 1 == n && in_upload_folder(&v.parts()[..i])))),
                    "{p:?}"
                );
                // Resolving is idempotent.
                assert_eq!(resolve(&v.to_string(), &VirtualPath::root()), Ok(v));
            }
        }
    }

    #[test]
    fn real_paths_stay_under_home() {
        let home = Path::new("/h");
        let v = resolve("/a/b", &VirtualPath::root()).unwrap();
        assert_eq!(v.to_real(home), PathBuf::from("/h/a/b"));
        assert_eq!(
            v.real_prefixes(home),
            vec![
                PathBuf::from("/h"),
                PathBuf::from("/h/a"),
                PathBuf::from("/h/a/b")
            ]
        );
        assert_eq!(v.parent().to_string(), "/a");
        assert_eq!(VirtualPath::root().parent().to_string(), "/");
        assert!(v.child("..").is_err());
        assert!(v.child("x/y").is_err());
    }
}
