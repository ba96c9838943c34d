//! One connection of a TLS or RELP sink: TCP (with the bounded send
//! buffer of every TCP sink), TLS on rustls when configured, a writer
//! half for the sink, and a reader task that hands what the receiver
//! sends to the sink's parser and notices when the receiver goes away.
//!
//! Bytes written to the socket (ciphertext under TLS) are counted, so that
//! SIOCOUTQ on the socket tells which frames the receiver's TCP stack has
//! acknowledged, as for plain TCP sinks.

use crate::config::TlsFiles;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// SO_SNDBUF of TCP sinks (the kernel doubles it).
const TCP_SEND_BUFFER: u32 = 64 * 1024;

/// How long connecting (TCP and the TLS handshake) may take.
const CONNECT_LIMIT: Duration = Duration::from_secs(5);

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A TCP stream that counts the bytes written to it.
struct Counted {
    inner: TcpStream,
    wire: Arc<AtomicU64>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.wire.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The TLS side of a sink, built from its files at start and at reload.
#[derive(Clone)]
pub(super) struct Tls {
    connector: tokio_rustls::TlsConnector,
    name: rustls::pki_types::ServerName<'static>,
    pub(super) ca: String,
}

impl Tls {
    /// The client configuration of `files` (a file that no longer reads
    /// or parses is said at each connection, as PW3002).
    pub(super) fn new(files: &TlsFiles) -> Result<Tls, String> {
        let m = crate::config::tls::load(files)?;
        let mut roots = rustls::RootCertStore::empty();
        for c in m.roots {
            roots
                .add(c)
                .map_err(|e| format!("{}: {e}", files.ca.display()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let config = match m.client {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("the client certificate and key do not go together: {e}"))?,
        };
        let name = rustls::pki_types::ServerName::try_from(files.server_name.clone())
            .map_err(|e| format!("{}: {e}", files.server_name))?;
        Ok(Tls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            name,
            ca: files.ca.display().to_string(),
        })
    }

    /// The name the receiver's certificate must carry.
    pub(super) fn server_name(&self) -> String {
        self.name.to_str().into_owned()
    }
}

/// Why the receiver went away, as the reader saw it.
#[derive(Default)]
pub(super) struct Ended {
    why: Mutex<Option<(io::ErrorKind, String)>>,
    /// Woken when the receiver sends something or goes away.
    pub(super) notify: Notify,
}

impl Ended {
    pub(super) fn end(&self, kind: io::ErrorKind, why: String) {
        let mut w = self.why.lock().unwrap_or_else(|e| e.into_inner());
        if w.is_none() {
            *w = Some((kind, why));
        }
        drop(w);
        self.notify.notify_waiters();
        self.notify.notify_one();
    }
    pub(super) fn error(&self) -> Option<io::Error> {
        let w = self.why.lock().unwrap_or_else(|e| e.into_inner());
        w.as_ref().map(|(k, s)| io::Error::new(*k, s.clone()))
    }
}

/// What the reader hands each piece the receiver sends to; an error ends
/// the connection (the receiver is not speaking the protocol).
pub(super) type OnData = Box<dyn FnMut(&[u8]) -> Result<(), String> + Send>;

pub(super) struct Link {
    w: tokio::io::WriteHalf<Box<dyn Io>>,
    /// The socket (a second descriptor of it) for SIOCOUTQ.
    sock: std::net::TcpStream,
    wire: Arc<AtomicU64>,
    pub(super) ended: Arc<Ended>,
    reader: tokio::task::JoinHandle<()>,
    /// Bytes given to `buffer`, not yet written.
    pending: Vec<u8>,
}

/// `buffer` writes once this much waits.
const BUFFER_FLUSH: usize = 64 * 1024;

impl Drop for Link {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A TCP connection to `addr` with the bounded send buffer (plain `tcp`
/// sinks use it too).
pub(super) async fn tcp(addr: &str) -> io::Result<TcpStream> {
    let to = tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or_else(|| io::Error::other("no address"))?;
    let sock = if to.is_ipv6() {
        tokio::net::TcpSocket::new_v6()?
    } else {
        tokio::net::TcpSocket::new_v4()?
    };
    // A bounded send buffer: a receiver that stops reading stalls the
    // write (and is reported) after this much.
    sock.set_send_buffer_size(TCP_SEND_BUFFER)?;
    let s = sock.connect(to).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

impl Link {
    /// Connect to `addr` (and shake hands over TLS), then read what the
    /// receiver sends into `on_data` until it goes away.
    pub(super) async fn connect(
        addr: &str,
        tls: Option<&Tls>,
        on_data: OnData,
    ) -> io::Result<Link> {
        let wire = Arc::new(AtomicU64::new(0));
        let io = tokio::time::timeout(CONNECT_LIMIT, async {
            let s = tcp(addr).await?;
            let sock = s.into_std()?;
            let probe = sock.try_clone()?;
            let counted = Counted {
                inner: TcpStream::from_std(sock)?,
                wire: wire.clone(),
            };
            let io: Box<dyn Io> = match tls {
                None => Box::new(counted),
                Some(t) => Box::new(
                    t.connector
                        .connect(t.name.clone(), counted)
                        .await
                        .map_err(|e| super::tls::explain(e, t))?,
                ),
            };
            Ok::<_, io::Error>((io, probe))
        })
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no connection within {}",
                    humantime::format_duration(CONNECT_LIMIT)
                ),
            ))
        })
        .map_err(|e| io::Error::new(e.kind(), format!("{addr}: {e}")))?;
        let (io, sock) = io;
        let (r, w) = tokio::io::split(io);
        let ended = Arc::new(Ended::default());
        let reader = tokio::spawn(read(r, ended.clone(), on_data));
        Ok(Link {
            w,
            sock,
            wire,
            ended,
            reader,
            pending: Vec::new(),
        })
    }

    /// Write what `buffer` holds, then `buf`, whole, within `limit`.
    pub(super) async fn write(&mut self, buf: &[u8], limit: Duration) -> io::Result<()> {
        if let Some(e) = self.ended.error() {
            return Err(e);
        }
        let pending = std::mem::take(&mut self.pending);
        super::syslog::bounded("write", limit, async {
            self.w.write_all(&pending).await?;
            self.w.write_all(buf).await?;
            self.w.flush().await
        })
        .await
    }

    /// Write `buf` later, with what follows it (one write for many
    /// frames): at `flush`, at the next `write`, or once 64 KiB wait.
    pub(super) async fn buffer(&mut self, buf: &[u8], limit: Duration) -> io::Result<()> {
        self.pending.extend_from_slice(buf);
        if self.pending.len() >= BUFFER_FLUSH {
            return self.flush(limit).await;
        }
        Ok(())
    }

    /// Write what `buffer` holds.
    pub(super) async fn flush(&mut self, limit: Duration) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.write(&[], limit).await
    }

    /// Bytes written to the socket so far.
    pub(super) fn wire(&self) -> u64 {
        self.wire.load(Ordering::Relaxed)
    }

    /// Bytes written that the receiver's TCP stack has not acknowledged
    /// (`None`: the connection was reset, its queue says nothing).
    pub(super) fn unacked(&self) -> Option<u64> {
        if !crate::sys::net::tcp_queue_intact(&self.sock) {
            return None;
        }
        crate::sys::net::unacked_bytes(&self.sock)
    }

    /// An orderly end: TLS close_notify, then FIN; waits at most `limit`
    /// for the receiver to close its side.
    pub(super) async fn close(mut self, limit: Duration) {
        let _ = tokio::time::timeout(limit, async {
            let _ = self.w.shutdown().await;
            while self.ended.error().is_none() {
                self.ended.notify.notified().await;
            }
        })
        .await;
    }
}

/// The reader: everything the receiver sends goes to `on_data`; the end of
/// the stream, an error, or data `on_data` refuses ends the link.
async fn read(mut r: tokio::io::ReadHalf<Box<dyn Io>>, ended: Arc<Ended>, mut on_data: OnData) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) => {
                let why = "the receiver closed the connection";
                return ended.end(io::ErrorKind::ConnectionAborted, why.into());
            }
            Ok(n) => {
                if let Err(e) = on_data(&buf[..n]) {
                    return ended.end(io::ErrorKind::InvalidData, e);
                }
                ended.notify.notify_one();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return ended.end(e.kind(), e.to_string()),
        }
    }
}
