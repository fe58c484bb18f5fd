//! The SFTP framing check between a session channel and russh-sftp.
//!
//! Owns: reading the client's SFTP stream packet by packet (4-byte length, type, body), and
//! ending the session at the first malformed packet (length 0 or over `MAX_PACKET_BYTES`,
//! unknown request type, stream cut inside a packet) with exactly one log line naming the
//! lender and the address.
//! Must not: change a well-formed packet, or let russh-sftp see a malformed one (it would
//! answer each 4 bytes of garbage with a warning: the stream is never resynchronised).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Largest SFTP packet a client may send (russh-sftp's own limit, `max_client_packet_len`).
pub const MAX_PACKET_BYTES: u32 = 262_144;

/// Request types a client may send (SFTP v3 and `SSH_FXP_EXTENDED`).
fn is_request_type(t: u8) -> bool {
    matches!(t, 1 | 3..=20 | 200)
}

enum State {
    /// Reading the 4-byte length; `n` bytes of it read.
    Header { n: usize },
    /// Reading the body into `packet[4..]`; `n` bytes of it read.
    Body { n: usize },
    /// Handing `packet[pos..]` to russh-sftp.
    Out { pos: usize },
    /// The stream ended (or was malformed): end of file from now on.
    Done,
}

/// A channel stream that only lets whole, well-formed SFTP packets through.
pub struct Guarded<S> {
    inner: S,
    lender: String,
    addr: SocketAddr,
    handle: Option<russh::server::Handle>,
    header: [u8; 4],
    packet: Vec<u8>,
    state: State,
}

impl<S> Guarded<S> {
    pub fn new(inner: S, lender: String, addr: SocketAddr, handle: russh::server::Handle) -> Self {
        Guarded {
            inner,
            lender,
            addr,
            handle: Some(handle),
            header: [0; 4],
            packet: Vec::new(),
            state: State::Header { n: 0 },
        }
    }

    /// Logs the one line, disconnects the whole SSH session and reads end of file from now on.
    fn malformed(&mut self, why: String) {
        tracing::warn!(lender = %self.lender, address = %self.addr, reason = %why, "malformed SFTP packet: session ended");
        self.state = State::Done;
        self.packet = Vec::new();
        if let Some(handle) = self.handle.take() {
            tokio::spawn(async move {
                let _ = handle
                    .disconnect(
                        russh::Disconnect::ProtocolError,
                        "malformed SFTP packet".into(),
                        "en".into(),
                    )
                    .await;
            });
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.state {
                State::Done => return Poll::Ready(Ok(())),
                State::Out { pos } => {
                    let n = (this.packet.len() - pos).min(buf.remaining());
                    buf.put_slice(&this.packet[pos..pos + n]);
                    this.state = if pos + n == this.packet.len() {
                        State::Header { n: 0 }
                    } else {
                        State::Out { pos: pos + n }
                    };
                    return Poll::Ready(Ok(()));
                }
                State::Header { n } => {
                    let mut rb = ReadBuf::new(&mut this.header[n..]);
                    match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Ready(Ok(())) => {}
                    }
                    let got = rb.filled().len();
                    if got == 0 {
                        if n > 0 {
                            this.malformed(format!("stream cut after {n} bytes of a length"));
                        }
                        this.state = State::Done;
                        return Poll::Ready(Ok(()));
                    }
                    if n + got < 4 {
                        this.state = State::Header { n: n + got };
                        continue;
                    }
                    let len = u32::from_be_bytes(this.header);
                    if len == 0 || len > MAX_PACKET_BYTES {
                        this.malformed(format!(
                            "packet length {len} (must be 1 to {MAX_PACKET_BYTES})"
                        ));
                        return Poll::Ready(Ok(()));
                    }
                    this.packet = Vec::with_capacity(4 + len as usize);
                    this.packet.extend_from_slice(&this.header);
                    this.packet.resize(4 + len as usize, 0);
                    this.state = State::Body { n: 0 };
                }
                State::Body { n } => {
                    let mut rb = ReadBuf::new(&mut this.packet[4 + n..]);
                    match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Ready(Ok(())) => {}
                    }
                    let got = rb.filled().len();
                    let len = this.packet.len() - 4;
                    if got == 0 {
                        this.malformed(format!("stream cut after {n} of {len} bytes of a packet"));
                        return Poll::Ready(Ok(()));
                    }
                    if n + got < len {
                        this.state = State::Body { n: n + got };
                        continue;
                    }
                    let t = this.packet[4];
                    if !is_request_type(t) {
                        this.malformed(format!("unknown request type {t}"));
                        return Poll::Ready(Ok(()));
                    }
                    this.state = State::Out { pos: 0 };
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_types() {
        assert!(is_request_type(1));
        assert!(!is_request_type(2));
        assert!(is_request_type(3) && is_request_type(20) && is_request_type(200));
        assert!(!is_request_type(101) && !is_request_type(0) && !is_request_type(21));
    }
}
