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
    Attrs, Data, File as DirEntry, FileAttributes, Handle, Name, OpenFlags, Status, StatusCode,
    Version,
};
use russh_sftp::server::StatusReply;

use super::path::{resolve, PathError, VirtualPath};
use crate::config::Config;
use crate::{fsutil, layout, limited_info};

/// Most handles one session may hold open.
const MAX_HANDLES: usize = 64;
/// Largest read answered at once.
const MAX_READ: u32 = 256 * 1024;
/// Directory entries per READDIR answer.
const DIR_CHUNK: usize = 128;

/// Called after an upload has been renamed into `pickup/`.
pub type UploadHook = Arc<dyn Fn() + Send + Sync>;

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
}

/// A write in progress: a hidden temporary file in `pickup/` and the name it will get.
struct Upload {
    file: Option<File>,
    tmp: PathBuf,
    dest: PathBuf,
    vpath: String,
    size: u64,
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
    /// A folder being listed, read lazily, and its virtual path (for the entries' modes).
    Dir(fs::ReadDir, VirtualPath),
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

fn path_status(e: PathError) -> StatusReply {
    match e {
        PathError::Hidden => status(StatusCode::NoSuchFile, "no such file"),
        other => status(StatusCode::BadMessage, &other.to_string()),
    }
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
    v.is_pickup_file(envs) || v.is_pickup_dir(envs)
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
        resolve(path, &VirtualPath::root()).map_err(|e| {
            // The path is the client's text: logged escaped (Debug).
            limited_info!("refusal", lender = %self.info.lender, address = %self.info.addr, path = ?path, reason = %e, "refused: path");
            path_status(e)
        })
    }

    /// The real path of `v` after checking that neither the path nor any folder on the way is a
    /// symbolic link; with `must_exist = false` a missing last name is fine.
    fn real(&self, v: &VirtualPath, must_exist: bool) -> Result<PathBuf, StatusReply> {
        let prefixes = v.real_prefixes(&self.info.home);
        let last = prefixes.len() - 1;
        for (i, p) in prefixes.iter().enumerate().skip(1) {
            match fs::symlink_metadata(p) {
                Ok(m) if m.file_type().is_symlink() => {
                    tracing::warn!(lender = %self.info.lender, address = %self.info.addr, path = %v, "refused: symbolic link in path");
                    return Err(denied());
                }
                Ok(m) if i < last && !m.is_dir() => {
                    return Err(status(StatusCode::NoSuchFile, "no such file"))
                }
                Ok(_) => {}
                Err(e) if i == last && !must_exist && e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_status(&e)),
            }
        }
        Ok(v.to_real(&self.info.home))
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

    fn open_write(&mut self, v: &VirtualPath, flags: OpenFlags) -> Result<String, StatusReply> {
        if !v.is_pickup_file(&self.info.environments) {
            return Err(self.refuse("write", &v.to_string()));
        }
        let name = v.file_name().unwrap_or_default();
        check_pickup_name(name)?;
        let dest = self.real(v, false)?;
        match fs::symlink_metadata(&dest) {
            Ok(m) if !m.is_file() => return Err(denied()),
            Ok(_) if flags.contains(OpenFlags::EXCLUDE) => {
                return Err(status(StatusCode::Failure, "the file already exists"))
            }
            Ok(_) if !flags.contains(OpenFlags::TRUNCATE) => {
                // Appending or resuming would need the old content in the temporary file.
                return Err(status(
                    StatusCode::OpUnsupported,
                    "resuming or appending to an upload is not supported; upload the whole file",
                ));
            }
            _ => {}
        }
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
        self.add_handle(OpenHandle::Write(up))
    }

    async fn finish_upload(&self, mut up: Upload) -> Result<(), StatusReply> {
        if let Some(why) = &up.failed {
            return Err(status(StatusCode::Failure, why));
        }
        // fsync and the durable rename can take long: on a blocking thread. `up` goes along,
        // so a failure still removes the temporary file (on drop).
        let joined = tokio::task::spawn_blocking(move || {
            let result = (|| {
                if let Some(f) = up.file.take() {
                    f.sync_all()?;
                }
                fsutil::rename_durable(&up.tmp, &up.dest)
            })();
            if result.is_ok() {
                up.done = true;
            }
            (result, up)
        })
        .await;
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
                if let Some(hook) = &self.info.on_upload {
                    hook();
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

    fn stat_path(&self, path: &str) -> Result<FileAttributes, StatusReply> {
        let v = self.resolve(path)?;
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
        Ok(Version::new())
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
            self.open_write(&v, pflags)?
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
            Some(OpenHandle::Dir(..)) | None => {
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

    async fn setstat(
        &mut self,
        _id: u32,
        path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        Err(self.refuse("setstat", &path))
    }

    async fn fsetstat(
        &mut self,
        id: u32,
        handle: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        // Clients that preserve times send this on their own upload: accepted and ignored.
        match self.handles.get(&handle) {
            Some(OpenHandle::Write(_)) => Ok(ok(id)),
            _ => Err(denied()),
        }
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        let v = self.resolve(&path)?;
        let real = self.real(&v, true)?;
        let rd = fs::read_dir(&real).map_err(|e| io_status(&e))?;
        let handle = self.add_handle(OpenHandle::Dir(rd, v))?;
        Ok(Handle { id, handle })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        let envs = &self.info.environments;
        let Some(OpenHandle::Dir(rd, dir)) = self.handles.get_mut(&handle) else {
            return Err(status(StatusCode::Failure, "invalid handle"));
        };
        let mut files = Vec::new();
        for entry in rd.by_ref() {
            let Ok(entry) = entry else { continue };
            // Names that are not UTF-8 or are hidden are not part of the namespace.
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let Ok(v) = dir.child(&name) else { continue };
            let Ok(meta) = entry.metadata() else { continue };
            files.push(DirEntry::new(name, attrs(&meta, writable(&v, envs))));
            if files.len() >= DIR_CHUNK {
                break;
            }
        }
        if files.is_empty() {
            return Err(status(StatusCode::Eof, "end of directory"));
        }
        Ok(Name { id, files })
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, Self::Error> {
        let v = self.resolve(&filename)?;
        if !v.is_pickup_file(&self.info.environments) {
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
        let from = self.resolve(&oldpath)?;
        let to = self.resolve(&newpath)?;
        let envs = &self.info.environments;
        if !from.is_pickup_file(envs) || !to.is_pickup_file(envs) {
            return Err(self.refuse("rename", &format!("{from} -> {to}")));
        }
        // Sandbox data never reaches production: no rename from one environment to another.
        if from.parts().first() != to.parts().first() {
            limited_info!("refusal", lender = %self.info.lender, address = %self.info.addr, from = %from, to = %to, "refused: rename across environments");
            return Err(status(
                StatusCode::PermissionDenied,
                "renaming across environments is not allowed; upload the file to the other environment instead",
            ));
        }
        check_pickup_name(to.file_name().unwrap_or_default())?;
        let real_from = self.real(&from, true)?;
        let real_to = self.real(&to, false)?;
        let meta = fs::symlink_metadata(&real_from).map_err(|e| io_status(&e))?;
        if !meta.is_file() {
            return Err(denied());
        }
        // SFTP v3: a rename never replaces an existing file. Atomic: of two racing renames of
        // one file, exactly one wins and the file keeps exactly one name.
        fsutil::rename_noreplace(&real_from, &real_to).map_err(|e| io_status(&e))?;
        tracing::info!(lender = %self.info.lender, address = %self.info.addr, from = %from, to = %to, "renamed");
        if let Some(hook) = &self.info.on_upload {
            hook();
        }
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
        assert_eq!(
            code(
                s.open(
                    1,
                    "/sandbox/import/pickup/.x".into(),
                    wflags(),
                    FileAttributes::default()
                )
                .await
            ),
            StatusCode::NoSuchFile
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
}
