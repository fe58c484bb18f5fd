//! The SFTP file system of one lender session: the russh-sftp `Handler`.
//!
//! Owns: mapping each SFTP request onto the lender's home through the path resolver, the
//! permission rule (read anywhere in the home, change only `pickup/` files), atomic uploads
//! (hidden temporary name, renamed into `pickup/` on close), the per-file size limit, the
//! pickup name rules (at most `layout::MAX_PICKUP_NAME_BYTES`, renames that never replace and
//! never cross environments), cleaning up half-written uploads when a client goes away, the
//! set of temporary names live sessions are writing, and removing stale ones a crash left.
//! Must not: follow a symbolic link, reach outside the home, show hidden names, answer a
//! request with anything but a proper SFTP status, remove a temporary file a live session is
//! writing, or run a pass (it only reports uploads).
//!
//! Per-packet file I/O is plain `std::fs` on local disk: each call is one short system call on
//! a bounded buffer, cheaper than a `spawn_blocking` hop per SFTP packet. Closing an upload
//! (fsync, rename, fsync of the folder) can take long and runs on a blocking thread.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use russh_sftp::protocol::{
    Attrs, Data, ExtendedReply, File as DirEntry, FileAttributes, Handle, Name, OpenFlags, Packet,
    Status, StatusCode, Version,
};
use russh_sftp::server::StatusReply;

use super::path::{resolve, PathError, VirtualPath};
use crate::config::Config;
use crate::{fsutil, layout, limited_info};

/// Most handles one session may hold open.
const MAX_HANDLES: usize = 64;
/// Largest read answered at once: OpenSSH's client refuses a reply over 256 KiB, so this is
/// what OpenSSH's sftp-server answers too (and what `limits@openssh.com` announces).
const MAX_READ: u32 = 256 * 1024 - 1024;
/// Largest SFTP packet russh-sftp accepts (announced by `limits@openssh.com`).
const MAX_PACKET: u64 = 256 * 1024;
/// Most entries one listing holds (a listing is read whole, to be sorted).
const MAX_LISTING: usize = 200_000;
/// Directory entries per READDIR answer.
const DIR_CHUNK: usize = 128;

/// Called with the lender and a file's real path when an upload (or a rename) made the file
/// appear in an upload folder (`Published`; not for hidden names, a client's temporary files),
/// and when a client touches a file there (`Touched`: setstat, stat, a hash), which clients do
/// to check an upload right after closing it.
pub type UploadHook = Arc<dyn Fn(&str, &Path, UploadEvent) + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadEvent {
    Published,
    Touched,
}

/// The temporary files live sessions are writing (real paths), shared by every session and by
/// the stale-upload sweep, which never removes one of them.
#[derive(Clone, Default)]
pub struct LiveUploads(Arc<Mutex<HashSet<PathBuf>>>);

impl LiveUploads {
    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, p: &Path) {
        self.set().insert(p.to_path_buf());
    }

    fn remove(&self, p: &Path) {
        self.set().remove(p);
    }

    pub fn contains(&self, p: &Path) -> bool {
        self.set().contains(p)
    }
}

/// True for the temporary names `temp_name` makes: `.<name>.<32 hex>.part`.
pub fn is_upload_temp_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.').and_then(|r| r.strip_suffix(".part")) else {
        return false;
    };
    rest.rsplit_once('.')
        .is_some_and(|(_, id)| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Removes the temporary upload files a crash left in every lender's pickup folders, except
/// those a live session is writing. Returns how many were removed. Errors are logged, not
/// returned: a stale file is only clutter (passes ignore it).
pub fn remove_stale_uploads(cfg: &Config, live: &LiveUploads) -> usize {
    let mut removed = 0;
    for lender in &cfg.lenders {
        for env in &cfg.environments {
            let pickup = layout::lender_dirs(&cfg.data_dir, &lender.id, env).pickup;
            let Ok(rd) = fs::read_dir(&pickup) else {
                continue;
            };
            for entry in rd.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if !is_upload_temp_name(name) || !entry.file_type().is_ok_and(|t| t.is_file()) {
                    continue;
                }
                let path = entry.path();
                // Held while removing: a session registers a name before creating the file.
                let set = live.set();
                if set.contains(&path) {
                    continue;
                }
                match fs::remove_file(&path) {
                    Ok(()) => {
                        removed += 1;
                        tracing::info!(lender = %lender.id, env = %env, file = %name, "removed a stale partial upload");
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(lender = %lender.id, env = %env, file = %name, error = %e, "cannot remove a stale partial upload")
                    }
                }
                drop(set);
            }
        }
    }
    removed
}

/// What a session needs to know, fixed at login.
pub struct SessionInfo {
    pub lender: String,
    pub addr: SocketAddr,
    /// `data_dir/lenders/<lender>`: this session's `/`.
    pub home: PathBuf,
    pub environments: Vec<String>,
    pub max_file_bytes: u64,
    pub on_upload: Option<UploadHook>,
    pub live_uploads: LiveUploads,
    /// Hashes of the files sessions published lately (rclone verifies after a pass took them).
    pub recent: super::exec::RecentHashes,
}

/// A write in progress: a hidden temporary file in `pickup/` and the name it will get.
struct Upload {
    file: Option<File>,
    tmp: PathBuf,
    dest: PathBuf,
    vpath: String,
    size: u64,
    /// Opened with APPEND: every write goes to the end (a resumed upload).
    append: bool,
    /// The published name is hidden (a client's own temporary file): no pass is told.
    hidden: bool,
    /// Set when the upload failed (size limit, write error): the temporary file is gone and
    /// closing the handle reports this instead of publishing a partial file.
    failed: Option<String>,
    done: bool,
    live: LiveUploads,
}

impl Upload {
    /// Marks the upload failed and removes what was written.
    fn fail(&mut self, why: String) -> StatusReply {
        self.file.take();
        let _ = fs::remove_file(&self.tmp);
        let reply = status(StatusCode::Failure, &why);
        self.failed = Some(why);
        reply
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.done {
            self.file.take();
            let _ = fs::remove_file(&self.tmp);
        }
        self.live.remove(&self.tmp);
    }
}

enum OpenHandle {
    Read(File),
    Write(Upload),
    /// A folder being listed: its names, sorted, how many were sent, its virtual path (for
    /// the entries' modes) and real path.
    Dir(Listing),
}

struct Listing {
    names: Vec<String>,
    next: usize,
    dir: VirtualPath,
    real: PathBuf,
}

/// The real path of `v` under `home` after checking that neither the path nor any folder on the
/// way is a symbolic link (a link: permission denied); with `must_exist = false` a missing last
/// name is fine.
pub fn real_path(home: &Path, v: &VirtualPath, must_exist: bool) -> Result<PathBuf, StatusReply> {
    let prefixes = v.real_prefixes(home);
    let last = prefixes.len() - 1;
    for (i, p) in prefixes.iter().enumerate().skip(1) {
        match fs::symlink_metadata(p) {
            Ok(m) if m.file_type().is_symlink() => return Err(denied()),
            Ok(m) if i < last && !m.is_dir() => {
                return Err(status(StatusCode::NoSuchFile, "no such file"))
            }
            Ok(_) => {}
            Err(e) if i == last && !must_exist && e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_status(&e)),
        }
    }
    Ok(v.to_real(home))
}

const POSIX_RENAME: &str = "posix-rename@openssh.com";
const STATVFS: &str = "statvfs@openssh.com";
const FSYNC: &str = "fsync@openssh.com";
const LIMITS: &str = "limits@openssh.com";
/// The extensions announced, with the versions clients compare exactly; each is answered by
/// `extended`.
const EXTENSIONS: [(&str, &str); 4] = [
    (POSIX_RENAME, "1"),
    (STATVFS, "2"),
    (FSYNC, "1"),
    (LIMITS, "1"),
];

fn bad_request() -> StatusReply {
    status(StatusCode::BadMessage, "malformed extended request")
}

/// Reads SSH wire strings (`uint32` length, bytes) from an extended request's body.
struct WireReader<'a>(&'a [u8]);

impl WireReader<'_> {
    fn string(&mut self) -> Option<String> {
        let len = u32::from_be_bytes(self.0.get(..4)?.try_into().ok()?) as usize;
        let bytes = self.0.get(4..4 + len)?;
        self.0 = &self.0[4 + len..];
        // Invalid UTF-8 becomes U+FFFD, which the path resolver refuses.
        Some(String::from_utf8_lossy(bytes).into_owned())
    }
}

/// One lender session's SFTP handler.
pub struct SftpFs {
    info: SessionInfo,
    handles: HashMap<String, OpenHandle>,
    next_handle: u64,
    initialised: bool,
}

fn status(code: StatusCode, msg: &str) -> StatusReply {
    code.with_message(msg)
}

fn denied() -> StatusReply {
    status(StatusCode::PermissionDenied, "permission denied")
}

fn io_status(e: &io::Error) -> StatusReply {
    match e.kind() {
        io::ErrorKind::NotFound => status(StatusCode::NoSuchFile, "no such file"),
        io::ErrorKind::PermissionDenied => denied(),
        io::ErrorKind::AlreadyExists => status(StatusCode::Failure, "the file already exists"),
        _ => status(StatusCode::Failure, "failure"),
    }
}

/// The refusal of a pickup name longer than `layout::MAX_PICKUP_NAME_BYTES`.
fn check_pickup_name(name: &str) -> Result<(), StatusReply> {
    if name.len() > layout::MAX_PICKUP_NAME_BYTES {
        return Err(status(
            StatusCode::Failure,
            &format!(
                "file name too long: {} bytes; pickup names are limited to {} bytes (UTF-8)",
                name.len(),
                layout::MAX_PICKUP_NAME_BYTES
            ),
        ));
    }
    Ok(())
}

/// A refused path is always *permission denied* (never "no such file", which clients take for
/// a missing file and act on), with the reason.
fn path_status(e: PathError) -> StatusReply {
    status(
        StatusCode::PermissionDenied,
        &format!("permission denied: {e}"),
    )
}

fn ok(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".to_string(),
        language_tag: "en-US".to_string(),
    }
}

/// The attributes a lender sees: write bits only where it may write.
fn attrs(meta: &Metadata, writable: bool) -> FileAttributes {
    let mut a = FileAttributes::from(meta);
    // The daemon's own uid/gid mean nothing to a lender.
    a.uid = Some(0);
    a.gid = Some(0);
    if !writable {
        a.permissions = a.permissions.map(|m| m & !0o222);
    }
    a
}

fn writable(v: &VirtualPath, envs: &[String]) -> bool {
    v.upload_folder(envs).is_some() || v.is_upload_dir(envs)
}

/// The hidden temporary name of an upload of `name`, short enough for any file system.
fn temp_name(name: &str) -> String {
    let mut short = String::new();
    for c in name.chars() {
        if short.len() + c.len_utf8() > 100 {
            break;
        }
        short.push(c);
    }
    format!(".{short}.{}.part", uuid::Uuid::new_v4().simple())
}

impl SftpFs {
    pub fn new(info: SessionInfo) -> Self {
        SftpFs {
            info,
            handles: HashMap::new(),
            next_handle: 0,
            initialised: false,
        }
    }

    fn resolve(&self, path: &str) -> Result<VirtualPath, StatusReply> {
        let v = resolve(path, &VirtualPath::root()).map_err(|e| {
            // The path is the client's text: logged escaped (Debug).
            limited_info!("refusal", lender = %self.info.lender, address = %self.info.addr, path = ?path, reason = %e, "refused: path");
            path_status(e)
        })?;
        // The daemon's own temporary files (uploads being written) are never reachable.
        if v.file_name().is_some_and(is_upload_temp_name) {
            return Err(self.refuse("temporary upload name", &v.to_string()));
        }
        Ok(v)
    }

    /// The real path of `v` after checking that neither the path nor any folder on the way is a
    /// symbolic link; with `must_exist = false` a missing last name is fine.
    fn real(&self, v: &VirtualPath, must_exist: bool) -> Result<PathBuf, StatusReply> {
        real_path(&self.info.home, v, must_exist).inspect_err(|e| {
            if e.status_code == StatusCode::PermissionDenied {
                tracing::warn!(lender = %self.info.lender, address = %self.info.addr, path = %v, "refused: symbolic link in path");
            }
        })
    }

    fn add_handle(&mut self, h: OpenHandle) -> Result<String, StatusReply> {
        if self.handles.len() >= MAX_HANDLES {
            return Err(status(StatusCode::Failure, "too many open handles"));
        }
        self.next_handle += 1;
        let key = format!("h{}", self.next_handle);
        self.handles.insert(key.clone(), h);
        Ok(key)
    }

    fn refuse(&self, what: &str, path: &str) -> StatusReply {
        limited_info!("refusal", lender = %self.info.lender, address = %self.info.addr, op = what, path, "refused: not allowed");
        denied()
    }

    fn open_read(&mut self, v: &VirtualPath) -> Result<String, StatusReply> {
        let real = self.real(v, true)?;
        // Checked before opening too: opening a FIFO would block the session.
        let meta = fs::symlink_metadata(&real).map_err(|e| io_status(&e))?;
        if !meta.is_file() {
            return Err(status(StatusCode::Failure, "not a regular file"));
        }
        let file = fsutil::open_nofollow(&real).map_err(|e| io_status(&e))?;
        let meta = file.metadata().map_err(|e| io_status(&e))?;
        if !meta.is_file() {
            return Err(status(StatusCode::Failure, "not a regular file"));
        }
        self.add_handle(OpenHandle::Read(file))
    }

    async fn open_write(
        &mut self,
        v: &VirtualPath,
        flags: OpenFlags,
    ) -> Result<String, StatusReply> {
        if v.upload_folder(&self.info.environments).is_none() {
            return Err(self.refuse("write", &v.to_string()));
        }
        let name = v.file_name().unwrap_or_default();
        check_pickup_name(name)?;
        let dest = self.real(v, false)?;
        // Without TRUNCATE an existing file keeps its content (a resume, `reput`, APPEND, or scp,
        // which truncates afterwards): the temporary file starts as a copy of it, so the file in
        // the folder is still only ever replaced whole, on close.
        let keep = match fs::symlink_metadata(&dest) {
            Ok(m) if !m.is_file() => return Err(denied()),
            Ok(_) if flags.contains(OpenFlags::EXCLUDE) => {
                return Err(status(StatusCode::Failure, "the file already exists"))
            }
            Ok(m) if !flags.contains(OpenFlags::TRUNCATE) => {
                if m.len() > self.info.max_file_bytes {
                    return Err(status(
                        StatusCode::Failure,
                        &format!(
                            "file exceeds the size limit of {} bytes",
                            self.info.max_file_bytes
                        ),
                    ));
                }
                true
            }
            _ => false,
        };
        let dir = dest.parent().map(Path::to_path_buf).ok_or_else(denied)?;
        let tmp = dir.join(temp_name(name));
        if self.handles.len() >= MAX_HANDLES {
            return Err(status(StatusCode::Failure, "too many open handles"));
        }
        // Registered before it exists, so the stale-upload sweep never sees it unregistered.
        self.info.live_uploads.insert(&tmp);
        let mut up = Upload {
            file: None,
            tmp,
            dest,
            vpath: v.to_string(),
            size: 0,
            append: flags.contains(OpenFlags::APPEND),
            hidden: v.is_hidden(),
            failed: None,
            done: false,
            live: self.info.live_uploads.clone(),
        };
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&up.tmp);
        match file {
            Ok(f) => up.file = Some(f),
            Err(e) => {
                // Not ours: nothing to remove.
                up.done = true;
                return Err(io_status(&e));
            }
        }
        if keep {
            // Copied on a blocking thread; `up` goes along so a failure removes the copy.
            let joined = tokio::task::spawn_blocking(move || {
                let r = (|| {
                    let mut src = fsutil::open_nofollow(&up.dest)?;
                    let Some(dst) = up.file.as_mut() else {
                        return Err(io::Error::other("upload closed"));
                    };
                    io::copy(&mut src, dst)
                })();
                (r, up)
            })
            .await;
            let (r, mut got) = joined.map_err(|_| status(StatusCode::Failure, "failure"))?;
            match r {
                Ok(n) => got.size = n,
                Err(e) => return Err(io_status(&e)),
            }
            tracing::info!(lender = %self.info.lender, address = %self.info.addr, path = %got.vpath, bytes = got.size, "upload resumes an existing file");
            up = got;
        }
        self.add_handle(OpenHandle::Write(up))
    }

    async fn finish_upload(&self, mut up: Upload) -> Result<(), StatusReply> {
        if let Some(why) = &up.failed {
            return Err(status(StatusCode::Failure, why));
        }
        // fsync and the durable rename can take long: on a blocking thread. `up` goes along,
        // so a failure still removes the temporary file (on drop).
        let joined = tokio::task::spawn_blocking(move || {
            let mut hashes = None;
            let result = (|| {
                if let Some(f) = up.file.take() {
                    f.sync_all()?;
                }
                // Small files' hashes, kept a while: a client verifying its upload (rclone's
                // md5sum) still gets them once a pass has taken the file.
                if !up.hidden && up.size <= super::exec::RECENT_MAX_BYTES {
                    hashes = super::exec::hash_all(&up.tmp);
                }
                fsutil::rename_durable(&up.tmp, &up.dest)
            })();
            if result.is_ok() {
                up.done = true;
            }
            (result, up, hashes)
        })
        .await;
        let joined = match joined {
            Ok((result, up, hashes)) => {
                if let (Ok(()), Some(h)) = (&result, hashes) {
                    self.info.recent.insert(&self.info.lender, &up.vpath, h);
                }
                Ok((result, up))
            }
            Err(e) => Err(e),
        };
        let (result, up) = match joined {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(lender = %self.info.lender, address = %self.info.addr, error = %e, "upload could not be stored");
                return Err(status(
                    StatusCode::Failure,
                    "the upload could not be stored",
                ));
            }
        };
        match result {
            Ok(()) => {
                tracing::info!(lender = %self.info.lender, address = %self.info.addr, path = %up.vpath, bytes = up.size, "upload complete");
                crate::metrics::get().upload_bytes_total.inc_by(up.size);
                if let (Some(hook), false) = (&self.info.on_upload, up.hidden) {
                    hook(&self.info.lender, &up.dest, UploadEvent::Published);
                }
                Ok(())
            }
            Err(e) => {
                tracing::error!(lender = %self.info.lender, address = %self.info.addr, path = %up.vpath, error = %e, "upload could not be stored");
                Err(status(
                    StatusCode::Failure,
                    "the upload could not be stored",
                ))
            }
        }
    }

    /// A rename within one upload folder. Plain SFTP v3 RENAME never replaces an existing file
    /// (atomically: of two racing renames of one file exactly one wins); `posix-rename`
    /// replaces it atomically, as rename(2) does.
    fn rename_file(&self, oldpath: &str, newpath: &str, replace: bool) -> Result<(), StatusReply> {
        let from = self.resolve(oldpath)?;
        let to = self.resolve(newpath)?;
        let envs = &self.info.environments;
        let (Some(f1), Some(f2)) = (from.upload_folder(envs), to.upload_folder(envs)) else {
            return Err(self.refuse("rename", &format!("{from} -> {to}")));
        };
        // Sandbox data never reaches production: no rename from one environment to another.
        if from.parts().first() != to.parts().first() {
            limited_info!("refusal", lender = %self.info.lender, address = %self.info.addr, from = %from, to = %to, "refused: rename across environments");
            return Err(status(
                StatusCode::PermissionDenied,
                "permission denied: renaming across environments is not allowed; upload the file to the other environment instead",
            ));
        }
        if f1 != f2 {
            limited_info!("refusal", lender = %self.info.lender, address = %self.info.addr, from = %from, to = %to, "refused: rename across folders");
            return Err(status(
                StatusCode::PermissionDenied,
                "permission denied: a file can only be renamed within its folder",
            ));
        }
        check_pickup_name(to.file_name().unwrap_or_default())?;
        let real_from = self.real(&from, true)?;
        let real_to = self.real(&to, false)?;
        let meta = fs::symlink_metadata(&real_from).map_err(|e| io_status(&e))?;
        if !meta.is_file() {
            return Err(denied());
        }
        if replace {
            if let Ok(m) = fs::symlink_metadata(&real_to) {
                if !m.is_file() {
                    return Err(denied());
                }
            }
            fsutil::rename_durable(&real_from, &real_to).map_err(|e| io_status(&e))?;
        } else {
            fsutil::rename_noreplace(&real_from, &real_to).map_err(|e| io_status(&e))?;
        }
        tracing::info!(lender = %self.info.lender, address = %self.info.addr, from = %from, to = %to, replace, "renamed");
        if let (Some(hook), false) = (&self.info.on_upload, to.is_hidden()) {
            hook(&self.info.lender, &real_to, UploadEvent::Published);
        }
        Ok(())
    }

    /// `statvfs@openssh.com`: the file system holding the lender's home.
    fn statvfs(&self, data: &[u8]) -> Result<Vec<u8>, StatusReply> {
        let mut r = WireReader(data);
        let path = r.string().ok_or_else(bad_request)?;
        let v = self.resolve(&path)?;
        let real = self.real(&v, true)?;
        let c = std::ffi::CString::new(real.as_os_str().as_encoded_bytes())
            .map_err(|_| bad_request())?;
        // SAFETY: statvfs writes into the zeroed struct we own; `c` is a valid C string.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
            return Err(io_status(&io::Error::last_os_error()));
        }
        let fields: [u64; 11] = [
            st.f_bsize as u64,
            st.f_frsize as u64,
            st.f_blocks as u64,
            st.f_bfree as u64,
            st.f_bavail as u64,
            st.f_files as u64,
            st.f_ffree as u64,
            st.f_favail as u64,
            0,
            // Read only where the lender may not write.
            if writable(&v, &self.info.environments) {
                0
            } else {
                1
            } | 2,
            layout::MAX_PICKUP_NAME_BYTES as u64,
        ];
        Ok(fields.iter().flat_map(|x| x.to_be_bytes()).collect())
    }

    /// Tells the hook a client touched `v` (a file in an upload folder).
    fn touched(&self, v: &VirtualPath) {
        if let (Some(hook), Some(_)) = (
            &self.info.on_upload,
            v.upload_folder(&self.info.environments),
        ) {
            hook(
                &self.info.lender,
                &v.to_real(&self.info.home),
                UploadEvent::Touched,
            );
        }
    }

    fn stat_path(&self, path: &str) -> Result<FileAttributes, StatusReply> {
        let v = self.resolve(path)?;
        self.touched(&v);
        let real = self.real(&v, true)?;
        let meta = fs::symlink_metadata(&real).map_err(|e| io_status(&e))?;
        Ok(attrs(&meta, writable(&v, &self.info.environments)))
    }
}

impl russh_sftp::server::Handler for SftpFs {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        status(StatusCode::OpUnsupported, "operation not supported")
    }

    async fn init(
        &mut self,
        _version: u32,
        _extensions: HashMap<String, String>,
    ) -> Result<Version, Self::Error> {
        if self.initialised {
            return Err(status(StatusCode::Failure, "duplicate init"));
        }
        self.initialised = true;
        let mut v = Version::new();
        for (name, version) in EXTENSIONS {
            v.extensions.insert(name.to_string(), version.to_string());
        }
        Ok(v)
    }

    async fn extended(
        &mut self,
        id: u32,
        request: String,
        data: Vec<u8>,
    ) -> Result<Packet, Self::Error> {
        match request.as_str() {
            POSIX_RENAME => {
                let mut r = WireReader(&data);
                let (Some(from), Some(to)) = (r.string(), r.string()) else {
                    return Err(bad_request());
                };
                self.rename_file(&from, &to, true)?;
                Ok(Packet::Status(ok(id)))
            }
            STATVFS => Ok(Packet::ExtendedReply(ExtendedReply {
                id,
                data: self.statvfs(&data)?,
            })),
            FSYNC => {
                let mut r = WireReader(&data);
                let handle = r.string().ok_or_else(bad_request)?;
                match self.handles.get(&handle) {
                    Some(OpenHandle::Write(up)) => {
                        if let Some(f) = &up.file {
                            f.sync_data().map_err(|e| io_status(&e))?;
                        }
                        Ok(Packet::Status(ok(id)))
                    }
                    Some(_) => Ok(Packet::Status(ok(id))),
                    None => Err(status(StatusCode::Failure, "invalid handle")),
                }
            }
            LIMITS => {
                let data = [
                    MAX_PACKET,
                    MAX_READ as u64,
                    MAX_READ as u64,
                    MAX_HANDLES as u64,
                ]
                .iter()
                .flat_map(|x| x.to_be_bytes())
                .collect();
                Ok(Packet::ExtendedReply(ExtendedReply { id, data }))
            }
            _ => Err(self.unimplemented()),
        }
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        _attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        let v = self.resolve(&filename)?;
        let writes = pflags.intersects(
            OpenFlags::WRITE | OpenFlags::APPEND | OpenFlags::CREATE | OpenFlags::TRUNCATE,
        );
        let handle = if writes {
            self.open_write(&v, pflags).await?
        } else {
            self.open_read(&v)?
        };
        Ok(Handle { id, handle })
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        match self.handles.remove(&handle) {
            Some(OpenHandle::Write(up)) => self.finish_upload(up).await.map(|()| ok(id)),
            Some(_) => Ok(ok(id)),
            None => Err(status(StatusCode::Failure, "invalid handle")),
        }
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<Data, Self::Error> {
        let Some(OpenHandle::Read(file)) = self.handles.get(&handle) else {
            return Err(status(StatusCode::Failure, "invalid handle"));
        };
        let mut buf = vec![0u8; len.min(MAX_READ) as usize];
        let n = file.read_at(&mut buf, offset).map_err(|e| io_status(&e))?;
        if n == 0 && !buf.is_empty() {
            return Err(status(StatusCode::Eof, "end of file"));
        }
        buf.truncate(n);
        Ok(Data { id, data: buf })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Status, Self::Error> {
        let max = self.info.max_file_bytes;
        let Some(OpenHandle::Write(up)) = self.handles.get_mut(&handle) else {
            return Err(status(StatusCode::Failure, "invalid handle"));
        };
        if let Some(why) = &up.failed {
            return Err(status(StatusCode::Failure, why));
        }
        // APPEND: every write goes to the end, whatever its offset (as O_APPEND does).
        let offset = if up.append { up.size } else { offset };
        let end = offset.checked_add(data.len() as u64);
        let Some(end) = end.filter(|end| *end <= max) else {
            tracing::warn!(lender = %self.info.lender, address = %self.info.addr, path = %up.vpath, limit = max, "refused: upload exceeds the size limit");
            return Err(up.fail(format!("file exceeds the size limit of {max} bytes")));
        };
        let Some(file) = up.file.as_ref() else {
            return Err(status(StatusCode::Failure, "invalid handle"));
        };
        if let Err(e) = file.write_all_at(&data, offset) {
            tracing::error!(lender = %self.info.lender, address = %self.info.addr, path = %up.vpath, error = %e, "upload write failed");
            return Err(up.fail("the upload could not be written".to_string()));
        }
        up.size = up.size.max(end);
        Ok(ok(id))
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        Ok(Attrs {
            id,
            attrs: self.stat_path(&path)?,
        })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        Ok(Attrs {
            id,
            attrs: self.stat_path(&path)?,
        })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let meta = match self.handles.get(&handle) {
            Some(OpenHandle::Read(f)) => f.metadata(),
            Some(OpenHandle::Write(up)) => match &up.file {
                Some(f) => f.metadata(),
                None => return Err(status(StatusCode::Failure, "the upload failed")),
            },
            Some(OpenHandle::Dir(_)) | None => {
                return Err(status(StatusCode::Failure, "invalid handle"))
            }
        }
        .map_err(|e| io_status(&e))?;
        let upload = matches!(self.handles.get(&handle), Some(OpenHandle::Write(_)));
        Ok(Attrs {
            id,
            attrs: attrs(&meta, upload),
        })
    }

    /// Times, permissions and owners are accepted and ignored on what the lender may write
    /// (SFTPGo's "ignore" mode: rclone, WinSCP and `lftp mirror` set them after every upload
    /// and count a refusal as a failed transfer); upload-time mtimes stay, which the settle
    /// time relies on. Changing a size by path, or anything elsewhere, is refused.
    async fn setstat(
        &mut self,
        id: u32,
        path: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        let v = self.resolve(&path)?;
        if !writable(&v, &self.info.environments) {
            return Err(self.refuse("setstat", &v.to_string()));
        }
        self.touched(&v);
        let real = self.real(&v, true)?;
        fs::symlink_metadata(&real).map_err(|e| io_status(&e))?;
        if attrs.size.is_some() {
            return Err(status(
                StatusCode::PermissionDenied,
                "permission denied: changing a file's size by path is not allowed; upload the file again",
            ));
        }
        Ok(ok(id))
    }

    async fn fsetstat(
        &mut self,
        id: u32,
        handle: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        // Clients that preserve times send this on their own upload: accepted and ignored. A
        // size (scp truncates after writing; `reput` restores its high-water mark) applies to
        // the temporary file.
        match self.handles.get_mut(&handle) {
            Some(OpenHandle::Write(up)) => {
                if let Some(size) = attrs.size {
                    if size > self.info.max_file_bytes {
                        let max = self.info.max_file_bytes;
                        return Err(up.fail(format!("file exceeds the size limit of {max} bytes")));
                    }
                    if let Some(f) = &up.file {
                        f.set_len(size).map_err(|e| io_status(&e))?;
                        up.size = size;
                    }
                }
                Ok(ok(id))
            }
            Some(OpenHandle::Read(_)) if attrs.size.is_none() => Ok(ok(id)),
            Some(_) => Err(denied()),
            None => Err(status(StatusCode::Failure, "invalid handle")),
        }
    }

    /// Listings are sorted by name (read whole, at most `MAX_LISTING` names).
    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        let v = self.resolve(&path)?;
        let real = self.real(&v, true)?;
        let mut names = Vec::new();
        for entry in fs::read_dir(&real).map_err(|e| io_status(&e))? {
            let Ok(entry) = entry else { continue };
            // Names that are not UTF-8 or are hidden are not listed.
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') || v.child(&name).is_err() {
                continue;
            }
            names.push(name);
            if names.len() >= MAX_LISTING {
                break;
            }
        }
        names.sort_unstable();
        let handle = self.add_handle(OpenHandle::Dir(Listing {
            names,
            next: 0,
            dir: v,
            real,
        }))?;
        Ok(Handle { id, handle })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        let envs = &self.info.environments;
        let Some(OpenHandle::Dir(l)) = self.handles.get_mut(&handle) else {
            return Err(status(StatusCode::Failure, "invalid handle"));
        };
        let mut files = Vec::new();
        while l.next < l.names.len() && files.len() < DIR_CHUNK {
            let name = &l.names[l.next];
            l.next += 1;
            // Gone since the folder was opened (claimed by a pass): left out.
            let Ok(meta) = fs::symlink_metadata(l.real.join(name)) else {
                continue;
            };
            let Ok(v) = l.dir.child(name) else { continue };
            files.push(DirEntry::new(
                name.clone(),
                attrs(&meta, writable(&v, envs)),
            ));
        }
        if files.is_empty() {
            return Err(status(StatusCode::Eof, "end of directory"));
        }
        Ok(Name { id, files })
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, Self::Error> {
        let v = self.resolve(&filename)?;
        if v.upload_folder(&self.info.environments).is_none() {
            return Err(self.refuse("remove", &v.to_string()));
        }
        let real = self.real(&v, true)?;
        let meta = fs::symlink_metadata(&real).map_err(|e| io_status(&e))?;
        if !meta.is_file() {
            return Err(denied());
        }
        fs::remove_file(&real).map_err(|e| io_status(&e))?;
        tracing::info!(lender = %self.info.lender, address = %self.info.addr, path = %v, "removed");
        Ok(ok(id))
    }

    async fn mkdir(
        &mut self,
        _id: u32,
        path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        Err(self.refuse("mkdir", &path))
    }

    async fn rmdir(&mut self, _id: u32, path: String) -> Result<Status, Self::Error> {
        Err(self.refuse("rmdir", &path))
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let v = self.resolve(&path)?;
        Ok(Name {
            id,
            files: vec![DirEntry::dummy(v.to_string())],
        })
    }

    async fn rename(
        &mut self,
        id: u32,
        oldpath: String,
        newpath: String,
    ) -> Result<Status, Self::Error> {
        self.rename_file(&oldpath, &newpath, false)?;
        Ok(ok(id))
    }

    async fn readlink(&mut self, _id: u32, _path: String) -> Result<Name, Self::Error> {
        Err(status(StatusCode::NoSuchFile, "no such link"))
    }

    async fn symlink(
        &mut self,
        _id: u32,
        linkpath: String,
        _targetpath: String,
    ) -> Result<Status, Self::Error> {
        Err(self.refuse("symlink", &linkpath))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh_sftp::server::Handler;

    fn session(home: &Path, max: u64) -> SftpFs {
        for loc in crate::layout::LOCATIONS {
            fs::create_dir_all(home.join("sandbox/import").join(loc)).unwrap();
        }
        SftpFs::new(SessionInfo {
            lender: "demo".into(),
            addr: "127.0.0.1:1".parse().unwrap(),
            home: home.to_path_buf(),
            environments: vec!["sandbox".into()],
            max_file_bytes: max,
            on_upload: None,
            live_uploads: LiveUploads::default(),
            recent: Default::default(),
        })
    }

    fn wflags() -> OpenFlags {
        OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE
    }

    #[tokio::test]
    async fn upload_appears_only_on_close() {
        let d = tempfile::tempdir().unwrap();
        let mut s = session(d.path(), 100);
        let pickup = d.path().join("sandbox/import/pickup");
        let h = s
            .open(
                1,
                "/sandbox/import/pickup/a.json".into(),
                wflags(),
                FileAttributes::default(),
            )
            .await
            .unwrap();
        s.write(2, h.handle.clone(), 0, b"[]".to_vec())
            .await
            .unwrap();
        assert!(!pickup.join("a.json").exists());
        let names: Vec<_> = fs::read_dir(&pickup)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
        assert!(names[0].to_string_lossy().starts_with(".a.json."));
        // The listing hides the temporary file.
        let dh = s.opendir(3, "/sandbox/import/pickup".into()).await.unwrap();
        assert!(s.readdir(4, dh.handle).await.is_err());
        s.close(5, h.handle).await.unwrap();
        assert_eq!(fs::read(pickup.join("a.json")).unwrap(), b"[]");
        assert_eq!(fs::read_dir(&pickup).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn size_limit_and_disconnect_clean_up() {
        let d = tempfile::tempdir().unwrap();
        let pickup = d.path().join("sandbox/import/pickup");
        let mut s = session(d.path(), 4);
        let h = s
            .open(
                1,
                "/sandbox/import/pickup/big.json".into(),
                wflags(),
                FileAttributes::default(),
            )
            .await
            .unwrap();
        s.write(2, h.handle.clone(), 0, b"1234".to_vec())
            .await
            .unwrap();
        let e = s
            .write(3, h.handle.clone(), 4, b"5".to_vec())
            .await
            .unwrap_err();
        assert_eq!(e.status_code, StatusCode::Failure);
        assert_eq!(fs::read_dir(&pickup).unwrap().count(), 0);
        assert!(s.close(4, h.handle).await.is_err());
        assert!(!pickup.join("big.json").exists());

        let h = s
            .open(
                5,
                "/sandbox/import/pickup/c.json".into(),
                wflags(),
                FileAttributes::default(),
            )
            .await
            .unwrap();
        s.write(6, h.handle, 0, b"12".to_vec()).await.unwrap();
        drop(s);
        assert_eq!(fs::read_dir(&pickup).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn refusals() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("home");
        let mut s = session(&home, 100);
        fs::write(d.path().join("secret"), b"x").unwrap();
        std::os::unix::fs::symlink(
            d.path().join("secret"),
            home.join("sandbox/import/results/link"),
        )
        .unwrap();
        std::os::unix::fs::symlink(d.path(), home.join("sandbox/import/lookups/dir")).unwrap();
        let code = |r: Result<Handle, StatusReply>| r.unwrap_err().status_code;
        let rd = OpenFlags::READ;
        assert_eq!(
            code(
                s.open(
                    1,
                    "/sandbox/import/results/x.json".into(),
                    wflags(),
                    FileAttributes::default()
                )
                .await
            ),
            StatusCode::PermissionDenied
        );
        assert_eq!(
            code(
                s.open(1, "/x.json".into(), wflags(), FileAttributes::default())
                    .await
            ),
            StatusCode::PermissionDenied
        );
        // A client's hidden temporary name in pickup is fine (lftp); the daemon's own are not
        // reachable, and every refusal says permission denied.
        let h = s
            .open(
                1,
                "/sandbox/import/pickup/.in.x".into(),
                wflags(),
                FileAttributes::default(),
            )
            .await
            .unwrap();
        s.close(1, h.handle).await.unwrap();
        assert!(home.join("sandbox/import/pickup/.in.x").exists());
        assert_eq!(
            code(
                s.open(
                    1,
                    format!("/sandbox/import/pickup/{}", temp_name("a.json")),
                    wflags(),
                    FileAttributes::default()
                )
                .await
            ),
            StatusCode::PermissionDenied
        );
        assert_eq!(
            code(
                s.open(
                    1,
                    "/sandbox/import/results/.x".into(),
                    rd,
                    FileAttributes::default()
                )
                .await
            ),
            StatusCode::PermissionDenied
        );
        assert_eq!(
            code(
                s.open(1, "/../secret".into(), rd, FileAttributes::default())
                    .await
            ),
            StatusCode::NoSuchFile
        );
        assert_eq!(
            code(
                s.open(
                    1,
                    "/sandbox/import/results/link".into(),
                    rd,
                    FileAttributes::default()
                )
                .await
            ),
            StatusCode::PermissionDenied
        );
        assert_eq!(
            code(
                s.open(
                    1,
                    "/sandbox/import/lookups/dir/secret".into(),
                    rd,
                    FileAttributes::default()
                )
                .await
            ),
            StatusCode::PermissionDenied
        );
        assert!(s
            .opendir(1, "/sandbox/import/lookups/dir".into())
            .await
            .is_err());
        assert_eq!(
            s.mkdir(
                1,
                "/sandbox/import/pickup/sub".into(),
                FileAttributes::default()
            )
            .await
            .unwrap_err()
            .status_code,
            StatusCode::PermissionDenied
        );
        assert_eq!(
            s.symlink(1, "/sandbox/import/pickup/l".into(), "/".into())
                .await
                .unwrap_err()
                .status_code,
            StatusCode::PermissionDenied
        );
        assert_eq!(
            s.remove(1, "/sandbox/import/results".into())
                .await
                .unwrap_err()
                .status_code,
            StatusCode::PermissionDenied
        );
        assert_eq!(
            s.realpath(1, "/../..".into()).await.unwrap().files[0].filename,
            "/"
        );
    }

    #[test]
    fn temp_names_are_hidden_ignored_and_short() {
        let long = "é".repeat(120);
        let t = temp_name(&long);
        assert!(t.len() <= 140, "{}", t.len());
        assert!(crate::layout::is_ignored_name(&t));
        assert_ne!(temp_name("a.json"), temp_name("a.json"));
    }

    #[tokio::test]
    async fn modes_show_where_a_lender_may_write() {
        let d = tempfile::tempdir().unwrap();
        let mut s = session(d.path(), 100);
        let pickup = s.stat(1, "/sandbox/import/pickup".into()).await.unwrap();
        let results = s.stat(1, "/sandbox/import/results".into()).await.unwrap();
        assert_ne!(pickup.attrs.permissions.unwrap() & 0o200, 0);
        assert_eq!(results.attrs.permissions.unwrap() & 0o222, 0);
    }

    #[test]
    fn upload_temp_names() {
        let t = temp_name("a.json");
        assert!(is_upload_temp_name(&t), "{t}");
        assert!(!is_upload_temp_name("a.json.part"));
        assert!(!is_upload_temp_name(".a.json.part"));
        assert!(!is_upload_temp_name(".a.json.0123.part"));
    }

    #[tokio::test]
    async fn long_names_and_cross_environment_renames_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let mut s = session(d.path(), 100);
        let long = format!(
            "/sandbox/import/pickup/{}",
            "a".repeat(layout::MAX_PICKUP_NAME_BYTES + 1)
        );
        let e = s
            .open(1, long.clone(), wflags(), FileAttributes::default())
            .await
            .unwrap_err();
        assert!(
            e.error_message
                .as_deref()
                .unwrap_or("")
                .contains("limited to 209 bytes"),
            "{e:?}"
        );
        let ok_name = format!(
            "/sandbox/import/pickup/{}",
            "a".repeat(layout::MAX_PICKUP_NAME_BYTES)
        );
        let h = s
            .open(2, ok_name.clone(), wflags(), FileAttributes::default())
            .await
            .unwrap();
        s.close(3, h.handle).await.unwrap();
        assert!(s.rename(4, ok_name.clone(), long).await.is_err());
        s.info.environments.push("production".into());
        fs::create_dir_all(d.path().join("production/import/pickup")).unwrap();
        let e = s
            .rename(5, ok_name, "/production/import/pickup/x.json".into())
            .await
            .unwrap_err();
        assert_eq!(e.status_code, StatusCode::PermissionDenied);
    }

    #[tokio::test]
    async fn rename_inside_pickup_only() {
        let d = tempfile::tempdir().unwrap();
        let mut s = session(d.path(), 100);
        let pickup = d.path().join("sandbox/import/pickup");
        fs::write(pickup.join("a"), b"1").unwrap();
        fs::write(pickup.join("b"), b"2").unwrap();
        let p = |n: &str| format!("/sandbox/import/pickup/{n}");
        assert!(s.rename(1, p("a"), p("b")).await.is_err());
        assert!(s
            .rename(1, p("a"), "/sandbox/import/results/a".into())
            .await
            .is_err());
        s.rename(1, p("a"), p("c")).await.unwrap();
        assert!(pickup.join("c").exists() && !pickup.join("a").exists());
        s.remove(1, p("c")).await.unwrap();
        assert!(!pickup.join("c").exists());
    }

    fn be_u64s(data: &[u8]) -> Vec<u64> {
        data.chunks(8)
            .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn wire(strings: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for s in strings {
            out.extend((s.len() as u32).to_be_bytes());
            out.extend(s.as_bytes());
        }
        out
    }

    #[tokio::test]
    async fn extensions_are_announced_and_answered() {
        let d = tempfile::tempdir().unwrap();
        let mut s = session(d.path(), 100);
        let v = s.init(3, HashMap::new()).await.unwrap();
        for (name, version) in EXTENSIONS {
            assert_eq!(v.extensions.get(name).map(String::as_str), Some(version));
        }
        let Packet::ExtendedReply(r) = s.extended(1, LIMITS.into(), vec![]).await.unwrap() else {
            panic!("limits");
        };
        assert_eq!(be_u64s(&r.data), vec![262144, 261120, 261120, 64]);
        let Packet::ExtendedReply(r) = s
            .extended(2, STATVFS.into(), wire(&["/sandbox/import/pickup"]))
            .await
            .unwrap()
        else {
            panic!("statvfs");
        };
        let f = be_u64s(&r.data);
        assert_eq!(f.len(), 11);
        assert!(f[0] > 0 && f[2] > 0);
        assert_eq!(f[9] & 1, 0, "pickup is writable");
        assert_eq!(f[10], layout::MAX_PICKUP_NAME_BYTES as u64);
        // posix-rename replaces; plain rename does not.
        let pickup = d.path().join("sandbox/import/pickup");
        fs::write(pickup.join("a.json"), b"new").unwrap();
        fs::write(pickup.join("b.json"), b"old").unwrap();
        let p = |n: &str| format!("/sandbox/import/pickup/{n}");
        assert!(s.rename(3, p("a.json"), p("b.json")).await.is_err());
        let r = s
            .extended(4, POSIX_RENAME.into(), wire(&[&p("a.json"), &p("b.json")]))
            .await
            .unwrap();
        assert!(matches!(r, Packet::Status(st) if st.status_code == StatusCode::Ok));
        assert_eq!(fs::read(pickup.join("b.json")).unwrap(), b"new");
        assert!(!pickup.join("a.json").exists());
        let e = s
            .extended(
                5,
                POSIX_RENAME.into(),
                wire(&[&p("b.json"), "/sandbox/import/results/b.json"]),
            )
            .await
            .unwrap_err();
        assert_eq!(e.status_code, StatusCode::PermissionDenied);
        // fsync on an upload handle.
        let h = s
            .open(6, p("c.json"), wflags(), FileAttributes::default())
            .await
            .unwrap();
        let r = s
            .extended(7, FSYNC.into(), wire(&[&h.handle]))
            .await
            .unwrap();
        assert!(matches!(r, Packet::Status(st) if st.status_code == StatusCode::Ok));
        assert_eq!(
            s.extended(8, "hardlink@openssh.com".into(), vec![])
                .await
                .unwrap_err()
                .status_code,
            StatusCode::OpUnsupported
        );
    }

    #[tokio::test]
    async fn setstat_is_accepted_and_ignored_where_the_lender_writes() {
        let d = tempfile::tempdir().unwrap();
        let mut s = session(d.path(), 100);
        let pickup = d.path().join("sandbox/import/pickup");
        fs::write(pickup.join("a.json"), b"[]").unwrap();
        fs::write(d.path().join("sandbox/import/results/r.json"), b"{}").unwrap();
        let before = fs::metadata(pickup.join("a.json"))
            .unwrap()
            .modified()
            .unwrap();
        let times = FileAttributes {
            atime: Some(1),
            mtime: Some(1),
            permissions: Some(0o600),
            ..Default::default()
        };
        s.setstat(1, "/sandbox/import/pickup/a.json".into(), times.clone())
            .await
            .unwrap();
        s.setstat(2, "/sandbox/import/pickup".into(), times.clone())
            .await
            .unwrap();
        // Ignored: the upload-time mtime stays (the settle time relies on it).
        assert_eq!(
            fs::metadata(pickup.join("a.json"))
                .unwrap()
                .modified()
                .unwrap(),
            before
        );
        let code = |r: Result<Status, StatusReply>| r.unwrap_err().status_code;
        assert_eq!(
            code(
                s.setstat(3, "/sandbox/import/results/r.json".into(), times.clone())
                    .await
            ),
            StatusCode::PermissionDenied
        );
        assert_eq!(
            code(
                s.setstat(
                    4,
                    "/sandbox/import/pickup/a.json".into(),
                    FileAttributes {
                        size: Some(0),
                        ..Default::default()
                    }
                )
                .await
            ),
            StatusCode::PermissionDenied
        );
        assert_eq!(
            code(
                s.setstat(5, "/sandbox/import/pickup/none.json".into(), times)
                    .await
            ),
            StatusCode::NoSuchFile
        );
    }

    #[tokio::test]
    async fn resume_and_append_never_expose_a_partial_file() {
        let d = tempfile::tempdir().unwrap();
        let mut s = session(d.path(), 100);
        let pickup = d.path().join("sandbox/import/pickup");
        fs::write(pickup.join("a.json"), b"[1,").unwrap();
        let p = "/sandbox/import/pickup/a.json".to_string();
        // reput: WRITE|CREATE|APPEND, writes from the remote size.
        let h = s
            .open(
                1,
                p.clone(),
                OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::APPEND,
                FileAttributes::default(),
            )
            .await
            .unwrap();
        s.write(2, h.handle.clone(), 3, b"2]".to_vec())
            .await
            .unwrap();
        // Until close the old file is what a pass sees.
        assert_eq!(fs::read(pickup.join("a.json")).unwrap(), b"[1,");
        s.close(3, h.handle).await.unwrap();
        assert_eq!(fs::read(pickup.join("a.json")).unwrap(), b"[1,2]");
        // scp: WRITE|CREATE without TRUNCATE, writes from 0, then truncates with fsetstat.
        let h = s
            .open(
                4,
                p.clone(),
                OpenFlags::WRITE | OpenFlags::CREATE,
                FileAttributes::default(),
            )
            .await
            .unwrap();
        s.write(5, h.handle.clone(), 0, b"[]".to_vec())
            .await
            .unwrap();
        s.fsetstat(
            6,
            h.handle.clone(),
            FileAttributes {
                size: Some(2),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        s.close(7, h.handle).await.unwrap();
        assert_eq!(fs::read(pickup.join("a.json")).unwrap(), b"[]");
        assert_eq!(fs::read_dir(&pickup).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn validate_is_an_upload_folder_and_listings_are_sorted() {
        let d = tempfile::tempdir().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut s = session(d.path(), 100);
        let seen2 = seen.clone();
        s.info.on_upload = Some(Arc::new(move |l: &str, p: &Path, e: UploadEvent| {
            if e == UploadEvent::Published {
                seen2.lock().unwrap().push((l.to_string(), p.to_path_buf()))
            }
        }));
        for n in ["c.json", "a.json", "b.json"] {
            let h = s
                .open(
                    1,
                    format!("/sandbox/import/validate/{n}"),
                    wflags(),
                    FileAttributes::default(),
                )
                .await
                .unwrap();
            s.close(2, h.handle).await.unwrap();
        }
        // A client's hidden temporary name: stored, not announced, renamed into place.
        let h = s
            .open(
                3,
                "/sandbox/import/validate/.in.d.json".into(),
                wflags(),
                FileAttributes::default(),
            )
            .await
            .unwrap();
        s.close(4, h.handle).await.unwrap();
        assert_eq!(seen.lock().unwrap().len(), 3);
        s.rename(
            5,
            "/sandbox/import/validate/.in.d.json".into(),
            "/sandbox/import/validate/d.json".into(),
        )
        .await
        .unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 4);
        assert_eq!(seen[3].0, "demo");
        assert!(seen[3].1.ends_with("sandbox/import/validate/d.json"));
        let dh = s
            .opendir(6, "/sandbox/import/validate".into())
            .await
            .unwrap();
        let names: Vec<String> = s
            .readdir(7, dh.handle)
            .await
            .unwrap()
            .files
            .into_iter()
            .map(|f| f.filename)
            .collect();
        assert_eq!(names, vec!["a.json", "b.json", "c.json", "d.json"]);
        // No rename between pickup and validate.
        assert_eq!(
            s.rename(
                8,
                "/sandbox/import/validate/a.json".into(),
                "/sandbox/import/pickup/a.json".into()
            )
            .await
            .unwrap_err()
            .status_code,
            StatusCode::PermissionDenied
        );
    }
}
