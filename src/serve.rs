//! `bulkload serve`: wires the daemon together.
//!
//! Owns: the host key (loaded, or generated on first start; RSA refused), the lenders' folder
//! trees before the first login, removing partial uploads a crash left, binding the listener,
//! starting the SFTP server, the cron job and the on-upload trigger, reloading the config on
//! SIGHUP (lenders, keys, passwords, limits, schedule; live sessions kept; a bad file is
//! logged and the running config kept), and the shutdown order: stop accepting, disconnect
//! sessions, let the running pass finish its current file, return.
//! Must not: process files or answer SFTP requests itself, or log a key's secret half.

use std::future::Future;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use russh::keys::ssh_key::{HashAlg, LineEnding};
use russh::keys::{Algorithm, PrivateKey};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, LiveConfig};
use crate::layout;
use crate::schedule::{self, Passes, ScheduleError, UploadTrigger};
use crate::sftp::fs::{remove_stale_uploads, LiveUploads, UploadEvent, UploadHook};
use crate::sftp::{self, Shared};

/// How long shutdown waits for sessions to close after asking them to.
const SESSION_DRAIN: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("host key {path}: {message}")]
    HostKey { path: PathBuf, message: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot create the folders of lender {lender}: {source}")]
    Folders {
        lender: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::ListenError),
    #[error(transparent)]
    Api(#[from] crate::api::ApiStartError),
}

fn key_err(path: &Path, message: impl ToString) -> ServeError {
    ServeError::HostKey {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Loads the OpenSSH host key at `path`, or generates an ed25519 one there (mode 0600) when the
/// file does not exist. Logs the key's SHA256 fingerprint either way.
pub fn load_or_create_host_key(path: &Path) -> Result<PrivateKey, ServeError> {
    let key = match std::fs::symlink_metadata(path) {
        Ok(_) => {
            let key = russh::keys::load_secret_key(path, None).map_err(|e| key_err(path, e))?;
            if key.algorithm().is_rsa() {
                // RUSTSEC-2023-0071 (Marvin): the `rsa` crate's private-key operations are not
                // constant-time. A server signs with its host key in every handshake, so an
                // RSA host key would expose it to that timing attack; ed25519 does not use it.
                return Err(key_err(
                    path,
                    "RSA host keys are refused (the rsa crate is open to the Marvin timing attack, RUSTSEC-2023-0071); use an ed25519 key: remove this file to have one generated, or `ssh-keygen -t ed25519`",
                ));
            }
            key
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
                .map_err(|e| key_err(path, e))?;
            let text = key
                .to_openssh(LineEnding::LF)
                .map_err(|e| key_err(path, e))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| key_err(path, e))?;
            }
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| key_err(path, e))?;
            f.write_all(text.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| key_err(path, e))?;
            tracing::info!(path = %path.display(), "generated a new ed25519 host key");
            key
        }
        Err(e) => return Err(key_err(path, e)),
    };
    tracing::info!(
        fingerprint = %key.public_key().fingerprint(HashAlg::Sha256),
        "host key"
    );
    Ok(key)
}

/// Makes glibc serve every allocation of 1 MiB or more with its own mapping, returned to the
/// system when freed. Without it, glibc raises its threshold after the first such free and then
/// keeps each password check's 19 MiB argon2 buffer in the heap of whichever thread ran it:
/// a flood of wrong passwords grew the daemon by hundreds of MiB that it never gave back.
fn bound_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before the daemon's threads start
    // allocating large blocks.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Creates every lender's folder tree (lenders see their folders from the first login on,
/// before any pass ran).
fn ensure_trees(cfg: &Config) -> Result<(), ServeError> {
    for lender in &cfg.lenders {
        for env in &cfg.environments {
            layout::lender_dirs(&cfg.data_dir, &lender.id, env)
                .ensure_tree()
                .map_err(|source| ServeError::Folders {
                    lender: lender.id.clone(),
                    source,
                })?;
        }
    }
    Ok(())
}

/// Rereads the config file (SIGHUP) and makes it current. A config that does not load or
/// validate is logged and the running one kept. Sessions are never dropped: logins read
/// lenders, keys and passwords from the new config; limits apply from now on (a new
/// `max_file_bytes` to new sessions).
async fn reload(
    live: &LiveConfig,
    shared: &Shared,
    passes: &Passes,
    cron: &mut tokio_cron_scheduler::JobScheduler,
) {
    let old = live.get();
    let (new, notes) = match old.reread() {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(error = %e, "reload refused: the config file is not valid; the running config is kept");
            return;
        }
    };
    for n in &notes {
        tracing::warn!("reload: {n}");
    }
    if let Err(e) = ensure_trees(&new) {
        tracing::error!(error = %e, "reload refused; the running config is kept");
        return;
    }
    let cron_changed = new.schedule.cron != old.schedule.cron;
    let new = Arc::new(new);
    if cron_changed {
        // Checked before anything changes: a bad expression keeps the running config whole.
        let probe = Passes::new(new.clone());
        match schedule::start_cron(probe).await {
            Ok(mut s) => {
                let _ = s.shutdown().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "reload refused; the running config is kept");
                return;
            }
        }
    }
    live.set(new.clone());
    shared.reloaded();
    if cron_changed {
        match schedule::start_cron(passes.clone()).await {
            Ok(s) => {
                if let Err(e) = cron.shutdown().await {
                    tracing::warn!(error = %e, "the previous schedule did not stop cleanly");
                }
                *cron = s;
            }
            Err(e) => tracing::error!(error = %e, "the new schedule could not start"),
        }
    }
    tracing::info!(
        lenders = new.lenders.len(),
        cron = %new.schedule.cron,
        on_upload = new.schedule.on_upload,
        "config reloaded"
    );
}

/// Runs the daemon until `shutdown` completes. SIGHUP reloads the config (`Config::source`).
pub async fn serve(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    bound_large_allocations();
    // Installed first: from here on SIGHUP reloads instead of ending the process.
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let cfg = Arc::new(cfg);
    ensure_trees(&cfg)?;
    let host_key = load_or_create_host_key(&cfg.sftp.host_key)?;
    let host_fingerprint = host_key
        .public_key()
        .fingerprint(HashAlg::Sha256)
        .to_string();
    // Partial uploads a crash (SIGKILL, power loss) left behind: no session is live yet.
    let live_uploads = LiveUploads::default();
    let removed = remove_stale_uploads(&cfg, &live_uploads);
    if removed > 0 {
        tracing::info!(removed, "stale partial uploads removed at start");
    }
    let listener = TcpListener::bind(&cfg.sftp.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: cfg.sftp.listen.clone(),
            source,
        })?;

    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let live = Arc::new(LiveConfig::new(cfg.clone()));
    // Issue 13: metrics listener and the notification sender (its own tasks: never a pass's).
    let ready = crate::metrics::Readiness {
        listening: Arc::new(std::sync::atomic::AtomicBool::new(false)),
    };
    let metrics = match &cfg.metrics.listen {
        Some(addr) => {
            Some(crate::metrics::serve(live.clone(), addr, ready.clone(), cancel.clone()).await?)
        }
        None => None,
    };
    let sender = tokio::spawn(crate::notify::run(
        live.clone(),
        Arc::new(tokio::sync::Notify::new()),
        cancel.clone(),
    ));
    let passes = Passes::live(live.clone()).with_live_uploads(live_uploads.clone());
    let mut cron = schedule::start_cron(passes.clone()).await?;

    // Every upload is recorded as complete (no settle time for it, only a grace while its
    // client checks it); with `on_upload` (read at each upload: a reload may turn it on or off)
    // it also asks for a pass of its lender.
    let trigger = Arc::new(UploadTrigger::default());
    tracker.spawn(schedule::debounce_uploads(
        passes.clone(),
        trigger.clone(),
        live.clone(),
        cancel.clone(),
    ));
    let on_upload: Option<UploadHook> = {
        let complete = passes.complete_uploads().clone();
        let live = live.clone();
        let trigger = trigger.clone();
        Some(Arc::new(
            move |lender: &str, path: &Path, event: UploadEvent| {
                let pending = match event {
                    UploadEvent::Published => {
                        complete.insert(path);
                        true
                    }
                    // A client checking its upload restarts its lender's quiet time.
                    UploadEvent::Touched => complete.touch(path),
                };
                if pending && live.get().schedule.on_upload {
                    trigger.notify(lender);
                }
            },
        ))
    };

    let shared = Arc::new(Shared::live(live.clone(), on_upload.clone(), live_uploads));
    // Issue 11: the Bulk Web API on `[api] listen` (none without `[api]`), with its worker
    // applying queued loads through the same single writer as passes.
    let api_task = match &cfg.api {
        Some(_) => {
            let state = crate::api::ApiState::new(
                live.clone(),
                passes.writer().clone(),
                shared.clone(),
                cancel.clone(),
            )?;
            // Issue 15: the web console, on the API's listener (its sign-ins share the SFTP
            // defender and password gate).
            let extra = crate::console::router(crate::console::Console::new(
                live.clone(),
                shared.clone(),
                passes.clone(),
                host_fingerprint.clone(),
            ));
            Some(crate::api::serve(state, extra).await?)
        }
        None => {
            if !cfg.operators.is_empty() || cfg.lenders.iter().any(|l| !l.users.is_empty()) {
                tracing::warn!("console users are configured but there is no [api] listen: the web console is served on the API's listener");
            }
            None
        }
    };
    let ssh = Arc::new(sftp::ssh_config(&cfg, host_key));
    ready
        .listening
        .store(true, std::sync::atomic::Ordering::SeqCst);
    match listener.local_addr() {
        Ok(a) => tracing::info!(address = %a, lenders = cfg.lenders.len(), "listening for SFTP"),
        Err(_) => tracing::info!(address = %cfg.sftp.listen, "listening for SFTP"),
    }
    let server = tokio::spawn(sftp::accept_loop(
        listener,
        ssh,
        shared.clone(),
        cancel.clone(),
        tracker.clone(),
    ));
    // Whatever was left in pickup while the daemon was down.
    {
        let p = passes.clone();
        tracker.spawn(async move { p.request("startup").await });
    }

    tokio::pin!(shutdown);
    loop {
        let hup = async {
            match hangup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut shutdown => break,
            _ = hup => {
                tracing::info!("SIGHUP: rereading the config");
                reload(&live, &shared, &passes, &mut cron).await;
            }
        }
    }
    tracing::info!("shutting down: no new logins; the running pass finishes its current file");
    cancel.cancel();
    let _ = server.await;
    if let Err(e) = cron.shutdown().await {
        tracing::warn!(error = %e, "scheduler did not stop cleanly");
    }
    passes.shutdown().await;
    let _ = sender.await;
    if let Some(m) = metrics {
        let _ = m.await;
    }
    if let Some(a) = api_task {
        let _ = a.await;
    }
    tracker.close();
    if tokio::time::timeout(SESSION_DRAIN, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some sessions did not close in time");
    }
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn rsa_host_keys_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("rsa_key");
        let out = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "rsa", "-b", "2048", "-N", "", "-f"])
            .arg(&p)
            .output();
        let Ok(out) = out else {
            eprintln!("skipped: ssh-keygen is not installed");
            return;
        };
        assert!(out.status.success());
        let e = load_or_create_host_key(&p).unwrap_err().to_string();
        assert!(e.contains("RSA host keys are refused"), "{e}");
    }

    #[test]
    fn host_key_is_generated_once_with_mode_0600() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("keys/host_key");
        let k1 = load_or_create_host_key(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let k2 = load_or_create_host_key(&p).unwrap();
        assert_eq!(k1.public_key(), k2.public_key());
        assert!(std::fs::read_to_string(&p)
            .unwrap()
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
    }
}
