//! The embedded SFTP server: the accept loop and the SSH side of one connection.
//!
//! Owns: accepting TCP connections (dropping banned addresses, addresses over their
//! unauthenticated-connection cap and MaxStartups' early random drops before the handshake),
//! the login grace time, the russh configuration (algorithms, constant-time rejections, idle
//! timeout, window tuning, no compression), logins through `auth`, and starting the `fs`
//! handler on an `sftp` subsystem behind the `guard` framing check.
//! Must not: offer a shell, forwarding or any command but the in-process hash commands of
//! `exec` (no program is ever run), log a secret, let one client flood the log
//! (repeated lines go through `lograte`), or stop serving because one connection (or one
//! `accept`) failed.
//!
//! **Invariant:** a connection reaches the file system only after a successful login, and then
//! only through `fs::SftpFs` rooted at its own lender's home.

pub mod auth;
pub mod exec;
pub mod fs;
pub mod guard;
pub mod lograte;
pub mod path;

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::Duration;

use russh::keys::ssh_key::{Algorithm, EcdsaCurve, HashAlg};
use russh::keys::PrivateKey;
use russh::server::{Auth, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{cipher, kex, mac, Channel, ChannelId, MethodKind, MethodSet, Preferred};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, LiveConfig};
use crate::layout;
use crate::{limited_info, limited_warn};
use auth::{Defender, PasswordGate, Pending, PendingSlot, SessionCounter, SessionSlot, Verdict};
use fs::{LiveUploads, SessionInfo, SftpFs, UploadHook};

/// Session channels one connection may open.
const MAX_CHANNELS: usize = 4;
/// Connections open at once, logged in or not; more are dropped at once, so a flood of idle
/// TCP connections cannot use up the daemon's file descriptors.
const MAX_CONNECTIONS: usize = 1024;

/// Key exchanges offered: post-quantum hybrid and curve25519 only (no finite-field
/// Diffie-Hellman, whose large groups cost the server a lot of CPU per handshake), plus the
/// extension-negotiation and strict-KEX (Terrapin) markers.
pub const KEX: &[kex::Name] = &[
    kex::MLKEM768X25519_SHA256,
    kex::CURVE25519,
    kex::CURVE25519_PRE_RFC_8731,
    kex::EXTENSION_SUPPORT_AS_SERVER,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
];
/// Ciphers offered: AEAD first, CTR modes (with an encrypt-then-MAC MAC) after.
pub const CIPHERS: &[cipher::Name] = &[
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_GCM,
    cipher::AES_128_GCM,
    cipher::AES_256_CTR,
    cipher::AES_192_CTR,
    cipher::AES_128_CTR,
];
/// MACs offered: SHA-2 only, encrypt-then-MAC first. The plain (encrypt-and-MAC) SHA-2 MACs
/// come last, for libssh2 before 1.11 (curl and PHP on Debian 12, many lenders' scripts), which
/// has neither encrypt-then-MAC nor an AEAD cipher; every client that has one picks it first.
pub const MACS: &[mac::Name] = &[
    mac::HMAC_SHA512_ETM,
    mac::HMAC_SHA256_ETM,
    mac::HMAC_SHA512,
    mac::HMAC_SHA256,
];
/// Host key and user signature algorithms (`server-sig-algs`): no SHA-1 `ssh-rsa`.
pub const KEY_ALGORITHMS: &[Algorithm] = &[
    Algorithm::Ed25519,
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP256,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP384,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP521,
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha512),
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha256),
    },
];

/// What every connection shares.
pub struct Shared {
    /// The current configuration (replaced on reload); read it with `cfg()`.
    pub live: Arc<LiveConfig>,
    pub defender: Defender,
    pub sessions: SessionCounter,
    pub passwords: PasswordGate,
    pub pending: Arc<Pending>,
    /// Temporary names of uploads being written (never removed as stale).
    pub live_uploads: LiveUploads,
    /// Told about each finished upload (the on-upload pass trigger).
    pub on_upload: Option<UploadHook>,
    /// Hash commands running at once (`exec`).
    pub hashes: Arc<tokio::sync::Semaphore>,
    /// Hashes of lately published uploads (`exec` answers from them once a pass took a file).
    pub recent: exec::RecentHashes,
}

impl Shared {
    pub fn new(cfg: Arc<Config>, on_upload: Option<UploadHook>, live_uploads: LiveUploads) -> Self {
        Self::live(Arc::new(LiveConfig::new(cfg)), on_upload, live_uploads)
    }

    /// Connections sharing `live`, which a reload replaces (then call `reloaded`).
    pub fn live(
        live: Arc<LiveConfig>,
        on_upload: Option<UploadHook>,
        live_uploads: LiveUploads,
    ) -> Self {
        let cfg = live.get();
        Shared {
            defender: Defender::from_config(&cfg),
            sessions: SessionCounter::new(cfg.sftp.max_sessions_per_lender),
            passwords: PasswordGate::new(),
            pending: Pending::new(
                cfg.sftp.max_unauthenticated_per_address,
                cfg.sftp.max_startups,
            ),
            live_uploads,
            live,
            on_upload,
            hashes: exec::hash_slots(),
            recent: exec::RecentHashes::default(),
        }
    }

    /// The configuration now.
    pub fn cfg(&self) -> Arc<Config> {
        self.live.get()
    }

    /// Applies the limits of a reloaded configuration (lenders, keys and passwords are read
    /// from it at each login anyway). Live sessions are kept.
    pub fn reloaded(&self) {
        let cfg = self.cfg();
        let s = &cfg.sftp;
        self.defender.set_params(
            s.max_login_failures,
            Duration::from_secs(s.login_failure_window_seconds),
            Duration::from_secs(s.ban_seconds),
        );
        self.sessions.set_max(s.max_sessions_per_lender);
        self.pending
            .set_limits(s.max_unauthenticated_per_address, s.max_startups);
    }
}

/// Both login methods, offered again after every rejection (russh would drop `password`
/// after one wrong password, and the OpenSSH client would then stop asking).
fn reject() -> Auth {
    Auth::Reject {
        proceed_with_methods: Some(MethodSet::from(
            &[MethodKind::PublicKey, MethodKind::Password][..],
        )),
        partial_success: false,
    }
}

/// Why a connection was ended from our side.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Ssh(#[from] russh::Error),
    #[error("the source address is banned after repeated failed logins")]
    Banned,
}

/// The russh settings the daemon uses, with `host_key` as its identity.
pub fn ssh_config(cfg: &Config, host_key: PrivateKey) -> russh::server::Config {
    russh::server::Config {
        methods: MethodSet::from(&[MethodKind::PublicKey, MethodKind::Password][..]),
        // Every rejection takes this long, whatever the reason: failed logins are slowed and
        // a wrong user cannot be told from a wrong password by timing.
        auth_rejection_time: Duration::from_secs(1),
        // OpenSSH starts with a "none" probe; answering it at once costs nothing.
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![host_key],
        window_size: 8 * 1024 * 1024,
        maximum_packet_size: 65535,
        max_auth_attempts: 6,
        inactivity_timeout: Some(Duration::from_secs(cfg.sftp.idle_timeout_seconds.max(1))),
        nodelay: true,
        preferred: Preferred {
            kex: Cow::Borrowed(KEX),
            key: Cow::Borrowed(KEY_ALGORITHMS),
            host_key_certificates: Cow::Borrowed(&[]),
            cipher: Cow::Borrowed(CIPHERS),
            mac: Cow::Borrowed(MACS),
            compression: Cow::Borrowed(&[russh::compression::NONE]),
        },
        ..Default::default()
    }
}

/// Accepts connections on `listener` until `cancel` fires, then asks every live session to
/// disconnect. Each session runs on `tracker`.
pub async fn accept_loop(
    listener: TcpListener,
    ssh: Arc<russh::server::Config>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let grace_of = |s: &Shared| Duration::from_secs(s.cfg().sftp.login_grace_seconds.max(1));
    let ctx = Arc::new(Ctx {
        ssh,
        shared: shared.clone(),
        slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
        cancel: cancel.clone(),
        tracker: tracker.clone(),
    });
    // Summaries of rate-limited log lines, also when a flood has stopped.
    {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(lograte::WINDOW);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => lograte::flush(),
                }
            }
        });
    }
    loop {
        let (socket, addr) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // E.g. too many open files: wait a little, never stop serving.
                    limited_warn!("accept", error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if shared.defender.is_banned(addr.ip()) {
            limited_info!("refusal", address = %addr, "refused: address banned after failed logins");
            continue;
        }
        let roll = rand::random_range(0..100);
        let deadline = tokio::time::Instant::now() + grace_of(&shared);
        match shared.pending.admit(addr.ip(), roll) {
            Ok(pending) => launch(&ctx, socket, addr, pending, deadline),
            Err(auth::StartupRefusal::PerAddress(n)) => {
                let Some(wait) = shared.pending.try_wait(addr.ip()) else {
                    limited_info!("refusal", address = %addr, unauthenticated = n, "refused: too many connections from this address that have not logged in");
                    continue;
                };
                // Over the address's cap: wait (unread) for one of its slots, within the grace time.
                let ctx2 = ctx.clone();
                tracker.spawn(async move {
                    let admitted = tokio::select! {
                        r = ctx2.shared.pending.admit_waiting(addr.ip(), roll, deadline) => r,
                        _ = ctx2.cancel.cancelled() => return,
                    };
                    drop(wait);
                    match admitted {
                        Ok(pending) => launch(&ctx2, socket, addr, pending, deadline),
                        Err(_) => {
                            limited_info!("refusal", address = %addr, unauthenticated = n, "refused: too many connections from this address that have not logged in (waited for the login grace time)");
                        }
                    }
                });
            }
            Err(auth::StartupRefusal::Startups { pending, percent }) => {
                limited_info!("refusal", address = %addr, unauthenticated = pending, drop_percent = percent, "refused: too many connections that have not logged in (early drop)");
            }
        }
    }
}

/// What starting a connection needs.
struct Ctx {
    ssh: Arc<russh::server::Config>,
    shared: Arc<Shared>,
    slots: Arc<tokio::sync::Semaphore>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

/// Runs the SSH session of an admitted connection, closing it at `deadline` unless it logged in.
fn launch(
    ctx: &Arc<Ctx>,
    socket: tokio::net::TcpStream,
    addr: SocketAddr,
    pending: Arc<PendingSlot>,
    deadline: tokio::time::Instant,
) {
    let Ok(slot) = ctx.slots.clone().try_acquire_owned() else {
        limited_warn!("refusal", address = %addr, limit = MAX_CONNECTIONS, "refused: too many connections");
        return;
    };
    if let Err(e) = socket.set_nodelay(true) {
        tracing::debug!(address = %addr, error = %e, "cannot set TCP_NODELAY");
    }
    // A second descriptor of the socket: shutting it down ends a connection whose login
    // grace time is over, whatever the session task is doing (and, unlike the number of
    // the session's own descriptor, it cannot be reused for another socket meanwhile).
    let kill_fd = socket.as_fd().try_clone_to_owned().ok();
    let authed = CancellationToken::new();
    let handler = Connection::new(ctx.shared.clone(), addr, pending.clone(), authed.clone());
    let ssh = ctx.ssh.clone();
    let cancel = ctx.cancel.clone();
    let grace_seconds = ctx.shared.cfg().sftp.login_grace_seconds;
    ctx.tracker.spawn(async move {
        let _slot = slot;
        let run = async move {
            let session = match russh::server::run_stream(ssh, socket, handler).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(address = %addr, error = %e, "connection setup failed");
                    return;
                }
            };
            let handle = session.handle();
            tokio::select! {
                r = session => {
                    if let Err(e) = r {
                        tracing::debug!(address = %addr, error = %e, "connection ended with an error");
                    }
                }
                _ = cancel.cancelled() => {
                    let _ = handle
                        .disconnect(
                            russh::Disconnect::ByApplication,
                            "server shutting down".into(),
                            "en".into(),
                        )
                        .await;
                }
            }
        };
        tokio::pin!(run);
        let expired = async {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                // Logged in in time: no grace limit from now on.
                _ = authed.cancelled() => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = &mut run => return,
            _ = expired => {}
        }
        limited_info!("refusal", address = %addr, grace_seconds, "closed: no login within the login grace time");
        pending.release();
        if let Some(fd) = &kill_fd {
            // SAFETY: shutdown(2) on a descriptor we own; it only ends this socket.
            unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
        }
        // The session ends on its next read; it may first finish a login step in progress.
        if tokio::time::timeout(Duration::from_secs(10), run).await.is_err() {
            tracing::debug!(address = %addr, "session did not end after its grace time");
        }
    });
}

/// The SSH side of one connection.
struct Connection {
    shared: Arc<Shared>,
    addr: SocketAddr,
    /// The lender logged in, with the session slot that counts it against the cap.
    login: Option<(String, SessionSlot)>,
    /// Session channels opened but not yet given to a subsystem.
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// Counts this connection as not logged in until it is.
    pending: Arc<PendingSlot>,
    /// Cancelled at login: ends the login grace timer.
    authed: CancellationToken,
    /// Hash commands (`exec`) reading standard input, or running.
    execs: HashMap<ChannelId, Exec>,
}

/// A hash command on an exec channel.
enum Exec {
    /// No file named: hashing standard input until EOF (bounded).
    Stdin(exec::Hasher, usize),
    /// Hashing a file on a task, which ends the channel itself.
    Running,
}

impl Connection {
    fn new(
        shared: Arc<Shared>,
        addr: SocketAddr,
        pending: Arc<PendingSlot>,
        authed: CancellationToken,
    ) -> Self {
        Connection {
            shared,
            addr,
            login: None,
            channels: HashMap::new(),
            pending,
            authed,
            execs: HashMap::new(),
        }
    }

    fn accept_login(&mut self, user: &str, method: &'static str) -> Auth {
        match self.shared.sessions.try_acquire(user) {
            Some(slot) => {
                tracing::info!(lender = user, address = %self.addr, method, "login");
                crate::metrics::login(method, true);
                crate::metrics::get().sftp_sessions.inc();
                self.login = Some((user.to_string(), slot));
                self.pending.release();
                self.authed.cancel();
                Auth::Accept
            }
            None => {
                limited_warn!("refusal", lender = user, address = %self.addr, limit = self.shared.cfg().sftp.max_sessions_per_lender, "refused: too many sessions for this lender");
                crate::metrics::login(method, false);
                reject()
            }
        }
    }

    /// A failed login already counted for the ban (passwords count before verifying).
    fn refused(
        &self,
        user: &str,
        method: &'static str,
        banned: bool,
    ) -> Result<Auth, SessionError> {
        // The user name is the client's text: logged escaped (Debug), never the password.
        limited_warn!("login", lender = ?user, address = %self.addr, method, "refused: login failed");
        crate::metrics::login(method, false);
        self.shared
            .defender
            .note_refused(self.addr.ip(), user, method);
        if banned {
            tracing::warn!(address = %self.addr, ban_seconds = self.shared.cfg().sftp.ban_seconds, "address banned after repeated failed logins");
            return Err(SessionError::Banned);
        }
        Ok(reject())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some((lender, _)) = &self.login {
            tracing::info!(lender = %lender, address = %self.addr, "session closed");
            crate::metrics::get().sftp_sessions.dec();
        }
    }
}

impl russh::server::Handler for Connection {
    type Error = SessionError;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let ip = self.addr.ip();
        if self.shared.defender.is_banned(ip) {
            return Err(SessionError::Banned);
        }
        let verdict = self
            .shared
            .passwords
            .check(
                &self.shared.cfg(),
                &self.shared.defender,
                ip,
                user,
                password,
            )
            .await;
        match verdict {
            Verdict::Good => Ok(self.accept_login(user, "password")),
            Verdict::Bad => self.refused(user, "password", false),
            Verdict::Banned => self.refused(user, "password", true),
        }
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // A probe: no signature yet. Clients try several keys, so an unknown key is logged
        // (rate-limited) but never counted toward a ban.
        if *offer.algorithm == (Algorithm::Rsa { hash: None }) {
            limited_info!("login", lender = ?user, address = %self.addr, "refused: ssh-rsa (SHA-1) signatures are not accepted; use rsa-sha2-256/512 or ed25519");
            return Ok(reject());
        }
        if auth::key_authorized(&self.shared.cfg(), user, offer.public_key) {
            Ok(Auth::Accept)
        } else {
            limited_info!("login", lender = ?user, address = %self.addr, key = %offer.public_key.fingerprint(HashAlg::Sha256), "refused: key not authorized");
            Ok(reject())
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.shared.defender.is_banned(self.addr.ip()) {
            return Err(SessionError::Banned);
        }
        if *key.algorithm == (Algorithm::Rsa { hash: None }) {
            limited_info!("login", lender = ?user, address = %self.addr, "refused: ssh-rsa (SHA-1) signatures are not accepted; use rsa-sha2-256/512 or ed25519");
            return Ok(reject());
        }
        if auth::key_authorized(&self.shared.cfg(), user, key.public_key) {
            Ok(self.accept_login(user, "publickey"))
        } else {
            limited_info!("login", lender = ?user, address = %self.addr, key = %key.public_key.fingerprint(HashAlg::Sha256), "refused: key not authorized");
            crate::metrics::login("publickey", false);
            Ok(reject())
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.login.is_some() && self.channels.len() < MAX_CHANNELS {
            self.channels.insert(channel.id(), channel);
            reply.accept().await;
        }
        // Dropping `reply` refuses the channel.
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.execs.remove(&channel) {
            Some(Exec::Stdin(h, _)) => {
                session.data(channel, format!("{}  -\n", h.hex()).into_bytes())?;
                session.exit_status_request(channel, 0)?;
                session.eof(channel)?;
                session.close(channel)?;
            }
            // The hash task ends the channel.
            Some(Exec::Running) => {
                self.execs.insert(channel, Exec::Running);
            }
            None => {
                // The SFTP subsystem ended. An exit status first: scp (and ssh) report failure
                // without one. Without the close, the OpenSSH client's `bye` hangs.
                session.exit_status_request(channel, 0)?;
                session.close(channel)?;
            }
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Frees the channel's place among the `MAX_CHANNELS`.
        self.channels.remove(&channel);
        self.execs.remove(&channel);
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(Exec::Stdin(h, n)) = self.execs.get_mut(&channel) {
            *n += data.len();
            if *n > exec::MAX_STDIN {
                self.execs.remove(&channel);
                session.extended_data(channel, 1, b"input too large\n".to_vec())?;
                session.exit_status_request(channel, 1)?;
                session.eof(channel)?;
                session.close(channel)?;
            } else {
                h.update(data);
            }
        }
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel_id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let channel = self.channels.remove(&channel_id);
        let (Some(channel), Some((lender, _)), "sftp") = (channel, &self.login, name) else {
            session.channel_failure(channel_id)?;
            return Ok(());
        };
        let cfg = self.shared.cfg();
        let info = SessionInfo {
            lender: lender.clone(),
            addr: self.addr,
            home: layout::lender_home(&cfg.data_dir, lender),
            environments: cfg.environments.clone(),
            max_file_bytes: cfg.sftp.max_file_bytes,
            on_upload: self.shared.on_upload.clone(),
            live_uploads: self.shared.live_uploads.clone(),
            recent: self.shared.recent.clone(),
        };
        session.channel_success(channel_id)?;
        let stream = guard::Guarded::new(
            channel.into_stream(),
            lender.clone(),
            self.addr,
            session.handle(),
        );
        russh_sftp::server::run(stream, SftpFs::new(info)).await;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        session.channel_failure(channel)?;
        session.close(channel)?;
        Ok(())
    }

    /// Only `md5sum`, `sha1sum` and `sha256sum` (see `exec`): answered in-process on the
    /// lender's own files; anything else is refused.
    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The channel is no longer waiting for a subsystem.
        let opened = self.channels.remove(&channel).is_some();
        let (Some((lender, _)), true, Some(cmd)) = (&self.login, opened, exec::parse(data)) else {
            limited_info!("refusal", address = %self.addr, command = ?String::from_utf8_lossy(&data[..data.len().min(200)]), "refused: exec");
            session.channel_failure(channel)?;
            session.close(channel)?;
            return Ok(());
        };
        session.channel_success(channel)?;
        let Some(path) = cmd.path else {
            self.execs
                .insert(channel, Exec::Stdin(exec::Hasher::new(cmd.kind), 0));
            return Ok(());
        };
        self.execs.insert(channel, Exec::Running);
        let cfg = self.shared.cfg();
        let home = layout::lender_home(&cfg.data_dir, lender);
        // A client hashing its upload is still checking it: a pass leaves it a little longer.
        if let (Some(hook), Ok(v)) = (
            &self.shared.on_upload,
            path::resolve(&path, &path::VirtualPath::root()),
        ) {
            if v.upload_folder(&cfg.environments).is_some() {
                hook(lender, &v.to_real(&home), fs::UploadEvent::Touched);
            }
        }
        let max = cfg.sftp.max_file_bytes;
        let slots = self.shared.hashes.clone();
        let recent = self.shared.recent.clone();
        let who = lender.clone();
        let handle = session.handle();
        let (lender, addr) = (lender.clone(), self.addr);
        tokio::spawn(async move {
            let answer = match tokio::time::timeout(exec::HASH_TIMEOUT, async {
                let _slot = slots.acquire_owned().await;
                let p = path.clone();
                tokio::task::spawn_blocking(move || {
                    exec::hash_file(&home, cmd.kind, &p, max, Some((&recent, &who)))
                })
                .await
                .unwrap_or_else(|_| Err("internal error\n".into()))
            })
            .await
            {
                Ok(a) => a,
                Err(_) => Err(format!("{path}: timed out\n")),
            };
            let code = match answer {
                Ok(out) => {
                    tracing::debug!(lender = %lender, address = %addr, path = %path, "hash answered");
                    let _ = handle.data(channel, out.into_bytes()).await;
                    0
                }
                Err(msg) => {
                    let _ = handle.extended_data(channel, 1, msg.into_bytes()).await;
                    1
                }
            };
            let _ = handle.exit_status_request(channel, code).await;
            let _ = handle.eof(channel).await;
            let _ = handle.close(channel).await;
        });
        Ok(())
    }
}
