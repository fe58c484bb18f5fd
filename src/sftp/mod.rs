//! The embedded SFTP server: the accept loop and the SSH side of one connection.
//!
//! Owns: accepting TCP connections (dropping banned addresses before the handshake), the
//! russh configuration (constant-time rejections, idle timeout, window tuning, no
//! compression), logins through `auth`, and starting the `fs` handler on an `sftp` subsystem.
//! Must not: offer a shell, exec or forwarding, log a secret, or stop serving because one
//! connection (or one `accept`) failed.
//!
//! **Invariant:** a connection reaches the file system only after a successful login, and then
//! only through `fs::SftpFs` rooted at its own lender's home.

pub mod auth;
pub mod fs;
pub mod path;

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::PrivateKey;
use russh::server::{Auth, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, MethodKind, MethodSet, Preferred};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::layout;
use auth::{Defender, SessionCounter, SessionSlot};
use fs::{SessionInfo, SftpFs, UploadHook};

/// Session channels one connection may open.
const MAX_CHANNELS: usize = 4;
/// Connections open at once, logged in or not; more are dropped at once, so a flood of idle
/// TCP connections cannot use up the daemon's file descriptors.
const MAX_CONNECTIONS: usize = 1024;

/// What every connection shares.
pub struct Shared {
    pub cfg: Arc<Config>,
    pub defender: Defender,
    pub sessions: SessionCounter,
    /// Told about each finished upload (the on-upload pass trigger).
    pub on_upload: Option<UploadHook>,
}

impl Shared {
    pub fn new(cfg: Arc<Config>, on_upload: Option<UploadHook>) -> Self {
        Shared {
            defender: Defender::from_config(&cfg),
            sessions: SessionCounter::new(cfg.sftp.max_sessions_per_lender),
            cfg,
            on_upload,
        }
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
            compression: Cow::Borrowed(&[russh::compression::NONE]),
            ..Preferred::default()
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
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (socket, addr) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // E.g. too many open files: wait a little, never stop serving.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if shared.defender.is_banned(addr.ip()) {
            tracing::info!(address = %addr, "refused: address banned after failed logins");
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(address = %addr, limit = MAX_CONNECTIONS, "refused: too many connections");
            continue;
        };
        if let Err(e) = socket.set_nodelay(true) {
            tracing::debug!(address = %addr, error = %e, "cannot set TCP_NODELAY");
        }
        let handler = Connection::new(shared.clone(), addr);
        let ssh = ssh.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let _slot = slot;
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
        });
    }
}

/// The SSH side of one connection.
struct Connection {
    shared: Arc<Shared>,
    addr: SocketAddr,
    /// The lender logged in, with the session slot that counts it against the cap.
    login: Option<(String, SessionSlot)>,
    /// Session channels opened but not yet given to a subsystem.
    channels: HashMap<ChannelId, Channel<Msg>>,
}

impl Connection {
    fn new(shared: Arc<Shared>, addr: SocketAddr) -> Self {
        Connection {
            shared,
            addr,
            login: None,
            channels: HashMap::new(),
        }
    }

    fn accept_login(&mut self, user: &str, method: &'static str) -> Auth {
        match self.shared.sessions.try_acquire(user) {
            Some(slot) => {
                tracing::info!(lender = user, address = %self.addr, method, "login");
                self.login = Some((user.to_string(), slot));
                Auth::Accept
            }
            None => {
                tracing::warn!(lender = user, address = %self.addr, limit = self.shared.cfg.sftp.max_sessions_per_lender, "refused: too many sessions for this lender");
                Auth::reject()
            }
        }
    }

    fn refuse_login(&self, user: &str, method: &'static str) -> Result<Auth, SessionError> {
        // The user name is the client's text: logged escaped (Debug), never the password.
        tracing::warn!(lender = ?user, address = %self.addr, method, "refused: login failed");
        if self.shared.defender.record_failure(self.addr.ip()) {
            tracing::warn!(address = %self.addr, ban_seconds = self.shared.cfg.sftp.ban_seconds, "address banned after repeated failed logins");
            return Err(SessionError::Banned);
        }
        Ok(Auth::reject())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some((lender, _)) = &self.login {
            tracing::info!(lender = %lender, address = %self.addr, "session closed");
        }
    }
}

impl russh::server::Handler for Connection {
    type Error = SessionError;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        if self.shared.defender.is_banned(self.addr.ip()) {
            return Err(SessionError::Banned);
        }
        let cfg = self.shared.cfg.clone();
        let (u, p) = (user.to_string(), password.to_string());
        // argon2 is deliberately slow: keep it off the async threads.
        let good = tokio::task::spawn_blocking(move || auth::password_matches(&cfg, &u, &p))
            .await
            .unwrap_or(false);
        if good {
            Ok(self.accept_login(user, "password"))
        } else {
            self.refuse_login(user, "password")
        }
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // A probe: no signature yet, so no failure is counted for an unknown key.
        if auth::key_authorized(&self.shared.cfg, user, offer.public_key) {
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
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
        if auth::key_authorized(&self.shared.cfg, user, key.public_key) {
            Ok(self.accept_login(user, "publickey"))
        } else {
            self.refuse_login(user, "publickey")
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
        // Without this the OpenSSH client's `bye` hangs.
        session.close(channel)?;
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
        let cfg = &self.shared.cfg;
        let info = SessionInfo {
            lender: lender.clone(),
            addr: self.addr,
            home: layout::lender_home(&cfg.data_dir, lender),
            environments: cfg.environments.clone(),
            max_file_bytes: cfg.sftp.max_file_bytes,
            on_upload: self.shared.on_upload.clone(),
        };
        session.channel_success(channel_id)?;
        russh_sftp::server::run(channel.into_stream(), SftpFs::new(info)).await;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }
}
