//! File-system helpers with the durability the exactly-once design relies on.
//!
//! Owns: atomic writes (temporary name in the same folder, fsync, rename, fsync of the folder),
//! durable renames, renames that never replace (`renameat2(RENAME_NOREPLACE)`), and opening
//! files without following symbolic links.
//! Must not: know about lenders, records or naming rules.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// fsyncs a folder so that renames and creations inside it survive a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `path` through `fill`, atomically: readers see the old file or the whole new one.
pub fn write_atomic_with(
    path: &Path,
    fill: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        let mut w = BufWriter::with_capacity(256 * 1024, f);
        fill(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes the temporary files `write_atomic_with` leaves when a process dies mid-write
/// (`.<name>.<pid>.tmp`). Only for folders this program alone writes.
pub fn remove_stale_temps(dir: &Path) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let n = e.file_name();
        let n = n.to_string_lossy();
        if n.starts_with('.') && n.ends_with(".tmp") && e.file_type()?.is_file() {
            fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, &mut |w| w.write_all(bytes))
}

/// Renames and makes the rename durable in both folders.
pub fn rename_durable(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    if let Some(d) = to.parent() {
        sync_dir(d)?;
    }
    match (from.parent(), to.parent()) {
        (Some(a), Some(b)) if a != b => sync_dir(a),
        _ => Ok(()),
    }
}

/// Renames `from` to `to` atomically, failing with `AlreadyExists` when `to` exists: never
/// replaces, and never leaves both names (`renameat2` with `RENAME_NOREPLACE`). On a file
/// system that refuses the flag (`EINVAL`, `ENOSYS`), falls back to a hard link and an unlink,
/// undoing the link when the source vanished meanwhile (a concurrent rename won), so that only
/// one of two racing renames keeps a name.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
    };
    let (f, t) = (c(from)?, c(to)?);
    // SAFETY: two valid NUL-terminated paths; renameat2 only reads them.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {}
        _ => return Err(e),
    }
    fs::hard_link(from, to)?;
    match fs::remove_file(from) {
        Ok(()) => Ok(()),
        Err(e) => {
            // Another rename took the source first: it owns the file, drop our second name.
            let _ = fs::remove_file(to);
            Err(e)
        }
    }
}

/// `rename_noreplace`, made durable in both folders.
pub fn rename_noreplace_durable(from: &Path, to: &Path) -> io::Result<()> {
    rename_noreplace(from, to)?;
    if let Some(d) = to.parent() {
        sync_dir(d)?;
    }
    match (from.parent(), to.parent()) {
        (Some(a), Some(b)) if a != b => sync_dir(a),
        _ => Ok(()),
    }
}

/// Opens a regular file for reading without following a symbolic link.
pub fn open_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn rename_noreplace_never_replaces() {
        let d = tempfile::tempdir().unwrap();
        let (a, b, c) = (d.path().join("a"), d.path().join("b"), d.path().join("c"));
        fs::write(&a, b"1").unwrap();
        fs::write(&b, b"2").unwrap();
        let e = rename_noreplace(&a, &b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&b).unwrap(), b"2");
        rename_noreplace_durable(&a, &c).unwrap();
        assert!(!a.exists() && fs::read(&c).unwrap() == b"1");
        assert_eq!(
            rename_noreplace(&a, &d.path().join("x"))
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn nofollow_refuses_links() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("t");
        fs::write(&t, b"x").unwrap();
        let l = d.path().join("l");
        std::os::unix::fs::symlink(&t, &l).unwrap();
        assert!(open_nofollow(&l).is_err());
        assert!(open_nofollow(&t).is_ok());
    }
}
