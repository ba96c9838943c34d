//! syslog sinks: RFC 3164 (local socket; the text starts with the message
//! ID) and RFC 5424 (MSGID = ID, fields as structured data), over a unix
//! datagram socket, UDP, or TCP with RFC 6587 octet counting.
//!
//! Each sink has a bounded queue: a slow or dead receiver never blocks
//! monitoring. A message leaves the queue only once written; TCP
//! reconnects with backoff and sends it again. On overflow the oldest is
//! dropped and, once the receiver is back, one PW3001 event says how many.
//! Events about a sink's own failure are not queued into that sink.

use crate::catalog::render::Renderer;
use crate::config::{Config, SyslogFormat, SyslogSink, Transport};
use crate::model::event::Event;
use crate::notify::queue::{Deliver, Reporter, SinkHandle};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Start every configured syslog sink.
pub fn start_all(cfg: &Config, renderer: Arc<Renderer>, report: Reporter) -> Vec<SinkHandle> {
    cfg.syslog
        .iter()
        .map(|s| start(s.clone(), renderer.clone(), report.clone()))
        .collect()
}

pub fn start(cfg: SyslogSink, renderer: Arc<Renderer>, report: Reporter) -> SinkHandle {
    let d = SyslogDeliver {
        conn: Conn::new(&cfg),
        write_timeout: cfg.write_timeout,
        cfg: cfg.clone(),
        renderer,
        pid: std::process::id(),
    };
    SinkHandle::start(
        &cfg.name,
        cfg.min_severity,
        cfg.queue,
        cfg.hold_down,
        d,
        report,
    )
}

struct SyslogDeliver {
    cfg: SyslogSink,
    renderer: Arc<Renderer>,
    conn: Conn,
    pid: u32,
    write_timeout: Duration,
}

impl Deliver for SyslogDeliver {
    async fn send(&mut self, ev: &Event, _report: &Reporter) -> std::io::Result<()> {
        for frame in frames(&self.cfg, &self.renderer, ev, self.pid) {
            self.conn.send(&frame, ev.seq, self.write_timeout).await?;
        }
        Ok(())
    }
    fn unacknowledged(&mut self) -> Option<u64> {
        self.conn.unacknowledged()
    }
    fn reset(&mut self) {
        self.conn.reset();
    }
    async fn confirm(&mut self, hold: Duration) -> std::io::Result<()> {
        self.conn.confirm(hold).await
    }
    async fn resend(&mut self) -> std::io::Result<()> {
        match &mut self.conn {
            Conn::Tls(t) => t.resend(self.write_timeout).await,
            Conn::Relp(r) => r.resend().await,
            Conn::Tcp { stream, addr, sent } => {
                tcp_check(stream, sent)?;
                if sent.resend.is_empty() {
                    return Ok(());
                }
                tcp_write(stream, addr, sent, None, self.write_timeout).await
            }
            Conn::Unix { .. } | Conn::Udp { .. } => Ok(()),
        }
    }
    async fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.conn {
            Conn::Relp(r) => r.flush().await,
            _ => Ok(()),
        }
    }
    async fn close(&mut self) {
        match &mut self.conn {
            Conn::Tls(t) => t.close().await,
            Conn::Relp(r) => r.close().await,
            _ => {}
        }
    }
}

/// The sink's TLS client settings, from its files (read at start and at
/// each reload; an error is said at each connection, as PW3002).
fn tls(cfg: &SyslogSink) -> Result<super::link::Tls, String> {
    match &cfg.tls {
        Some(files) => super::link::Tls::new(files),
        None => Err("transport = \"tls\" without a tls table".into()),
    }
}

/// `what` did not finish within `limit`: the receiver does not read.
fn stalled(what: &str, limit: Duration) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "{what} stalled for {} (the receiver does not read)",
            humantime::format_duration(limit)
        ),
    )
}

/// Run `f` for at most `limit`.
pub(super) async fn bounded<T>(
    what: &str,
    limit: Duration,
    f: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| Err(stalled(what, limit)))
}

enum Conn {
    Unix {
        sock: Option<tokio::net::UnixDatagram>,
        path: String,
    },
    Udp {
        sock: Option<tokio::net::UdpSocket>,
        addr: String,
    },
    Tcp {
        stream: Option<tokio::net::TcpStream>,
        addr: String,
        sent: Sent,
    },
    Tls(super::rfc5425::TlsConn),
    Relp(super::relp::Relp),
}

/// Frames written on the current TCP connection that the peer's kernel
/// may not have acknowledged yet (SIOCOUTQ tells how many bytes are
/// unacknowledged). When the connection dies they are sent again first, so
/// a receiver restart loses nothing it had not yet received.
#[derive(Default)]
pub(super) struct Sent {
    /// (end offset on the connection, the event's seq, the frame).
    frames: VecDeque<(u64, u64, Vec<u8>)>,
    pub(super) written: u64,
    /// Frames that must be re-sent on the next connection, with their seq.
    pub(super) resend: Vec<(u64, Vec<u8>)>,
}

const SENT_LIMIT: usize = 4096;

fn unacked_bytes(s: &tokio::net::TcpStream) -> Option<u64> {
    crate::sys::net::unacked_bytes(s)
}

impl Sent {
    /// `frame` of event `seq` is written, ending at offset `end`.
    pub(super) fn push(&mut self, end: u64, seq: u64, frame: Vec<u8>) {
        self.written = end;
        self.frames.push_back((end, seq, frame));
        if self.frames.len() > SENT_LIMIT {
            self.frames.pop_front();
        }
    }

    /// Forget frames the peer has acknowledged.
    pub(super) fn prune(&mut self, unacked: u64) {
        let acked = self.written.saturating_sub(unacked);
        while self.frames.front().is_some_and(|(end, _, _)| *end <= acked) {
            self.frames.pop_front();
        }
    }
    /// The connection is gone: what was not acknowledged goes again.
    pub(super) fn lost(&mut self, unacked: Option<u64>) {
        if let Some(u) = unacked {
            self.prune(u);
        }
        self.resend
            .extend(self.frames.drain(..).map(|(_, seq, f)| (seq, f)));
        self.written = 0;
    }

    /// The lowest seq written (or to be written again) that the peer has
    /// not acknowledged.
    pub(super) fn lowest_unacknowledged(&self) -> Option<u64> {
        let resend = self.resend.iter().map(|(s, _)| *s);
        let frames = self.frames.iter().map(|(_, s, _)| *s);
        resend.chain(frames).min()
    }
}

impl Conn {
    fn new(cfg: &SyslogSink) -> Conn {
        match cfg.transport {
            Transport::Unix => Conn::Unix {
                sock: None,
                path: cfg.address.clone(),
            },
            Transport::Udp => Conn::Udp {
                sock: None,
                addr: cfg.address.clone(),
            },
            Transport::Tcp => Conn::Tcp {
                stream: None,
                addr: cfg.address.clone(),
                sent: Sent::default(),
            },
            Transport::Tls => Conn::Tls(super::rfc5425::TlsConn::new(&cfg.address, tls(cfg))),
            Transport::Relp => Conn::Relp(super::relp::Relp::new(
                &cfg.address,
                cfg.tls.as_ref().map(|_| tls(cfg)),
                cfg.window,
                cfg.write_timeout,
            )),
        }
    }

    fn reset(&mut self) {
        match self {
            Conn::Unix { sock, .. } => *sock = None,
            Conn::Udp { sock, .. } => *sock = None,
            Conn::Tcp { stream, sent, .. } => {
                if stream.take().is_some() {
                    sent.lost(None);
                }
            }
            Conn::Tls(t) => t.reset(),
            Conn::Relp(r) => r.reset(),
        }
    }

    /// TCP: the lowest seq the peer has not acknowledged yet (`None`:
    /// everything written is, or the transport cannot tell).
    fn unacknowledged(&mut self) -> Option<u64> {
        let (stream, sent) = match self {
            Conn::Tcp { stream, sent, .. } => (stream, sent),
            Conn::Tls(t) => return t.unacknowledged(),
            Conn::Relp(r) => return r.unacknowledged(),
            Conn::Unix { .. } | Conn::Udp { .. } => return None,
        };
        // A reset connection's send queue is gone: its count says nothing.
        if let Some(s) = stream
            .as_ref()
            .filter(|s| crate::sys::net::tcp_queue_intact(*s))
        {
            if let Some(u) = unacked_bytes(s) {
                sent.prune(u);
            }
        }
        sent.lowest_unacknowledged()
    }

    async fn send(&mut self, frame: &[u8], seq: u64, limit: Duration) -> std::io::Result<()> {
        match self {
            Conn::Tls(t) => t.send(frame, seq, limit).await,
            Conn::Relp(r) => r.send(seq, frame).await,
            Conn::Unix { sock, path } => {
                if sock.is_none() {
                    *sock = Some(tokio::net::UnixDatagram::unbound()?);
                }
                let s = sock.as_ref().expect("set");
                bounded("write", limit, s.send_to(frame, &*path))
                    .await
                    .map(|_| ())
            }
            Conn::Udp { sock, addr } => {
                if sock.is_none() {
                    let target = tokio::net::lookup_host(addr.as_str())
                        .await?
                        .next()
                        .ok_or_else(|| std::io::Error::other(format!("{addr}: no address")))?;
                    let bind = if target.is_ipv6() {
                        "[::]:0"
                    } else {
                        "0.0.0.0:0"
                    };
                    let s = tokio::net::UdpSocket::bind(bind).await?;
                    s.connect(target).await?;
                    *sock = Some(s);
                }
                let s = sock.as_ref().expect("set");
                bounded("write", limit, s.send(frame)).await.map(|_| ())
            }
            Conn::Tcp { stream, addr, sent } => {
                tcp_check(stream, sent)?;
                let mut buf = Vec::with_capacity(frame.len() + 8);
                buf.extend_from_slice(frame.len().to_string().as_bytes());
                buf.push(b' ');
                buf.extend_from_slice(frame);
                tcp_write(stream, addr, sent, Some((seq, buf)), limit).await
            }
        }
    }

    /// After a failure: is what was just sent delivered? Unix datagrams:
    /// the send succeeded, so a socket listened. UDP: no ICMP error came
    /// back within `hold`. TCP: the peer acknowledged every byte and kept
    /// the connection for `hold`.
    async fn confirm(&mut self, hold: Duration) -> std::io::Result<()> {
        match self {
            Conn::Unix { .. } => Ok(()),
            Conn::Tls(t) => t.confirm(hold).await,
            Conn::Relp(r) => r.confirm(hold).await,
            Conn::Udp { sock, .. } => {
                tokio::time::sleep(hold).await;
                let Some(s) = sock.as_ref() else {
                    return Err(std::io::Error::other("socket closed"));
                };
                match s.take_error()? {
                    Some(e) => Err(e),
                    None => Ok(()),
                }
            }
            Conn::Tcp { stream, sent, .. } => {
                let deadline = tokio::time::Instant::now() + hold;
                loop {
                    let Some(s) = stream.as_ref() else {
                        return Err(std::io::Error::other("connection closed"));
                    };
                    match peer_state(s) {
                        Peer::Open => {}
                        Peer::Closed => {
                            sent.lost(unacked_bytes(s));
                            *stream = None;
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::ConnectionAborted,
                                "the receiver closed the connection",
                            ));
                        }
                        Peer::Reset(e) => {
                            sent.lost(None);
                            *stream = None;
                            return Err(e);
                        }
                    }
                    let unacked = unacked_bytes(s).unwrap_or(0);
                    if tokio::time::Instant::now() >= deadline {
                        if unacked == 0 {
                            sent.prune(0);
                            return Ok(());
                        }
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!(
                                "{unacked} bytes not acknowledged by the receiver within {}",
                                humantime::format_duration(hold)
                            ),
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

/// TCP: what the receiver did to the connection since the last look. A
/// receiver that went away has sent FIN (or RST): noticed before writing,
/// so what the old connection left unacknowledged goes to the next one. A
/// graceful close is not a failure (connect again); a reset is.
fn tcp_check(stream: &mut Option<tokio::net::TcpStream>, sent: &mut Sent) -> std::io::Result<()> {
    let Some(s) = stream.as_ref() else {
        return Ok(());
    };
    match peer_state(s) {
        Peer::Open => {
            if let Some(u) = unacked_bytes(s) {
                sent.prune(u);
            }
        }
        Peer::Closed => {
            // The send queue is intact: its count says what was not read.
            let u = unacked_bytes(s);
            sent.lost(u);
            *stream = None;
        }
        Peer::Reset(e) => {
            // The receiver threw the connection away with what it had not
            // read: a failure.
            sent.lost(None);
            *stream = None;
            return Err(e);
        }
    }
    Ok(())
}

async fn tcp_connect(addr: &str) -> std::io::Result<tokio::net::TcpStream> {
    bounded("connect", Duration::from_secs(5), super::link::tcp(addr))
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("{addr}: {e}")))
}

/// TCP: connect if needed, write what the last connection owes, then
/// `frame` (octet-counted, with its event's seq) if any.
async fn tcp_write(
    stream: &mut Option<tokio::net::TcpStream>,
    addr: &str,
    sent: &mut Sent,
    frame: Option<(u64, Vec<u8>)>,
    limit: Duration,
) -> std::io::Result<()> {
    if stream.is_none() {
        *stream = Some(tcp_connect(addr).await?);
        sent.written = 0;
    }
    let s = stream.as_mut().expect("set");
    let mut frames = std::mem::take(&mut sent.resend);
    // The caller retries its own frame after a failure; the others are owed.
    let owed = frames.len();
    frames.extend(frame);
    for (i, (seq, f)) in frames.iter().enumerate() {
        if let Err(e) = bounded("write", limit, s.write_all(f)).await {
            // Not written (or not known to be): kept for the next try. A
            // frame cut by the timeout spoils the connection: drop it.
            sent.lost(None);
            sent.resend
                .extend(frames[i.min(owed)..owed].iter().cloned());
            *stream = None;
            return Err(e);
        }
        sent.push(sent.written + f.len() as u64, *seq, f.clone());
    }
    Ok(())
}

enum Peer {
    Open,
    Closed,
    Reset(std::io::Error),
}

/// Has the receiver closed or reset the connection? (procward never
/// expects data from a syslog receiver; anything read is discarded.)
fn peer_state(s: &tokio::net::TcpStream) -> Peer {
    let mut b = [0u8; 64];
    loop {
        match s.try_read(&mut b) {
            Ok(0) => return Peer::Closed,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Peer::Open,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Peer::Reset(e),
        }
    }
}

/// Cut `s` to at most `max` bytes at a character boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn pri(facility: u8, ev: &Event) -> u16 {
    facility as u16 * 8 + ev.severity.code() as u16
}

/// Escape an RFC 5424 PARAM-VALUE: `"`, `\` and `]`.
fn sd_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for ch in v.chars() {
        if matches!(ch, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

fn sd_element(sd_id: &str, ev: &Event) -> String {
    let mut s = format!(
        "[{sd_id} seq=\"{}\" severity=\"{}\"",
        ev.seq,
        ev.severity.as_str()
    );
    for (k, v) in &ev.fields {
        let val = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        s.push_str(&format!(" {k}=\"{}\"", sd_escape(&val)));
    }
    s.push(']');
    s
}

/// The RFC 3164 header: `<PRI>Mmm dd hh:mm:ss [HOST ]TAG[PID]: ` (the
/// host only on the network, as syslog(3) writes locally).
fn head3164(network: bool, facility: u8, ev: &Event, tag: &str, pid: u32) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ev.time_ms);
    let local: chrono::DateTime<chrono::Local> = t.into();
    let stamp = local.format("%b %e %H:%M:%S");
    let pri = pri(facility, ev);
    if network {
        format!("<{pri}>{stamp} {} {tag}[{pid}]: ", ev.host)
    } else {
        format!("<{pri}>{stamp} {tag}[{pid}]: ")
    }
}

/// What the sink sends for `ev`: procward's message; with `profile =
/// "processsaver"`, ProcessSaver's line instead for the events it knows
/// (both with `also-procward`).
fn frames(cfg: &SyslogSink, renderer: &Renderer, ev: &Event, pid: u32) -> Vec<Vec<u8>> {
    let legacy = cfg
        .legacy
        .as_ref()
        .and_then(|l| super::legacy::text(ev).map(|t| (l, t)));
    let Some((l, (admin, text))) = legacy else {
        return vec![format(cfg, renderer, ev, pid)];
    };
    let tag = if admin { &l.padmin_tag } else { &l.pcheck_tag };
    let network = cfg.transport != Transport::Unix;
    let line = match cfg.format {
        SyslogFormat::Rfc3164 => head3164(network, l.facility, ev, tag, pid) + &text,
        SyslogFormat::Rfc5424 => format!(
            "<{}>1 {} {} {tag} {pid} - - {text}",
            pri(l.facility, ev),
            ev.time,
            ev.host
        ),
    };
    let mut v = vec![truncate_utf8(&line, cfg.max_size).as_bytes().to_vec()];
    if l.also_procward {
        v.push(format(cfg, renderer, ev, pid));
    }
    v
}

/// One syslog message for `ev`, framed for the sink (without TCP octet
/// counting, which the transport adds).
pub fn format(cfg: &SyslogSink, renderer: &Renderer, ev: &Event, pid: u32) -> Vec<u8> {
    let network = cfg.transport != Transport::Unix;
    match cfg.format {
        SyslogFormat::Rfc3164 => {
            let text = renderer
                .output("rfc3164", ev, cfg.language)
                .unwrap_or_else(|_| format!("{} {}", ev.id, ev.text));
            let head = head3164(network, cfg.facility, ev, "procward", pid);
            // ` [seq=N]` (seq-marker): kept whole when the text is cut.
            let marker = if cfg.seq_marker {
                format!(" [seq={}]", ev.seq)
            } else {
                String::new()
            };
            let room = cfg.max_size.saturating_sub(head.len() + marker.len());
            let mut out = head.into_bytes();
            out.extend_from_slice(truncate_utf8(&text, room).as_bytes());
            out.extend_from_slice(marker.as_bytes());
            out
        }
        SyslogFormat::Rfc5424 => {
            let text = renderer
                .output("rfc5424", ev, cfg.language)
                .unwrap_or_else(|_| ev.text.clone());
            let head = format!(
                "<{}>1 {} {} procward {pid} {} ",
                pri(cfg.facility, ev),
                ev.time,
                ev.host,
                ev.id
            );
            let mut sd = sd_element(&cfg.sd_id, ev);
            if head.len() + sd.len() + 1 > cfg.max_size {
                sd = "-".into();
            }
            let room = cfg.max_size.saturating_sub(head.len() + sd.len() + 1);
            format!("{head}{sd} {}", truncate_utf8(&text, room)).into_bytes()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::model::Lang;

    fn sink(format: SyslogFormat, transport: Transport, max: usize) -> SyslogSink {
        SyslogSink {
            name: "t".into(),
            transport,
            address: "x".into(),
            format,
            facility: 3,
            min_severity: crate::model::event::Severity::Debug,
            queue: 10,
            max_size: max,
            language: Lang::En,
            hold_down: Duration::from_secs(2),
            write_timeout: Duration::from_secs(10),
            legacy: None,
            sd_id: "procward@32473".into(),
            tls: None,
            window: 128,
            seq_marker: false,
        }
    }

    fn renderer() -> Renderer {
        Renderer::new(Arc::new(Catalog::embedded()), None, "node1").unwrap()
    }

    #[test]
    fn rfc3164_local_line() {
        let r = renderer();
        let ev = r.sample_event("PW2003", Lang::En);
        let line = String::from_utf8(format(
            &sink(SyslogFormat::Rfc3164, Transport::Unix, 1024),
            &r,
            &ev,
            812,
        ))
        .unwrap();
        assert!(line.starts_with("<27>"), "{line}"); // daemon.error = 3*8+3
        assert!(
            line.ends_with(
                " procward[812]: PW2003 target httpd: process 4242 disappeared (killed by SIGSEGV, core dumped)"
            ),
            "{line}"
        );
    }

    #[test]
    fn rfc5424_line_with_structured_data() {
        let r = renderer();
        let mut ev = r.sample_event("PW2012", Lang::En);
        ev.fields
            .insert("output".into(), serde_json::Value::from("a\"b]c\\d"));
        let line = String::from_utf8(format(
            &sink(SyslogFormat::Rfc5424, Transport::Udp, 2048),
            &r,
            &ev,
            9,
        ))
        .unwrap();
        assert!(
            line.starts_with(
                "<27>1 2025-11-24T16:00:00.000Z node1 procward 9 PW2012 [procward@32473 seq=\"1\""
            ),
            "{line}"
        );
        assert!(line.contains(r#"output="a\"b\]c\\d""#), "{line}");
        assert!(line.contains(r#"target="httpd""#), "{line}");
    }

    #[test]
    fn rfc3164_lines_end_in_their_seq_when_asked_and_still_match_the_filters() {
        let r = renderer();
        let mut ev = r.sample_event("PW2003", Lang::En);
        ev.seq = 4711;
        let mut s = sink(SyslogFormat::Rfc3164, Transport::Udp, 1024);
        s.seq_marker = true;
        let line = String::from_utf8(format(&s, &r, &ev, 812)).unwrap();
        assert!(
            line.ends_with("(killed by SIGSEGV, core dumped) [seq=4711]"),
            "{line}"
        );
        let catalog = Catalog::embedded();
        let m = catalog.get("PW2003").unwrap();
        let pattern = regex::Regex::new(&crate::filters::pattern(m, Lang::En).unwrap()).unwrap();
        let text = line.split("procward[812]: ").nth(1).unwrap();
        assert!(pattern.is_match(text), "{pattern} ~ {text}");
        s.max_size = 480;
        let mut ev = r.sample_event("PW2012", Lang::En);
        ev.seq = 4711;
        ev.fields
            .insert("output".into(), serde_json::Value::from("x".repeat(2000)));
        let cut = String::from_utf8(format(&s, &r, &ev, 812)).unwrap();
        assert!(cut.len() <= 480 && cut.ends_with(" [seq=4711]"), "{cut}");
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        assert_eq!(truncate_utf8("ああ", 4), "あ");
        let r = renderer();
        let mut ev = r.sample_event("PW2012", Lang::Ja);
        ev.fields.insert(
            "output".into(),
            serde_json::Value::from("エラー".repeat(400)),
        );
        ev.text = r.text("PW2012", &ev.fields, Lang::Ja).unwrap();
        let mut s = sink(SyslogFormat::Rfc3164, Transport::Udp, 600);
        s.language = Lang::Ja;
        let out = format(&s, &r, &ev, 1);
        assert!(out.len() <= 600);
        assert!(String::from_utf8(out).is_ok());
    }
}
