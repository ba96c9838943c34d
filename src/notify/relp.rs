//! RELP, the Reliable Event Logging Protocol of librelp and rsyslog's
//! imrelp/omrelp, as a client: `open` with `relp_version=0` and
//! `commands=syslog`, up to `window` `syslog` frames sent and not yet
//! answered, each `rsp 200` an acknowledgement (the sink's cursor passes
//! it), an orderly `close`, and `serverclose` taken as the end of the
//! session. After a break every frame not acknowledged is sent again, on
//! a new session, before anything new.
//!
//! Written here on tokio: no maintained Rust RELP crate exists (checked
//! crates.io and GitHub, 2026-12). Frame grammar from librelp's
//! relpframe.c: `TXNR SP COMMAND SP DATALEN [SP DATA] LF`; transaction
//! numbers run from 1 and librelp wraps them after 999,999,999 in a way
//! its own server mishandles, so a session is closed and a new one opened
//! before that.

use super::link::{Link, OnData, Tls};
use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// A new session is opened past this transaction number.
const TXNR_LIMIT: u64 = 999_000_000;
/// The largest frame a receiver may send back (responses are short).
const MAX_RESPONSE: usize = 64 * 1024;
/// How long an orderly close waits for the receiver.
const CLOSE_LIMIT: Duration = Duration::from_secs(2);

/// One frame the receiver sent.
#[derive(Debug, PartialEq, Eq)]
struct Frame {
    txnr: u64,
    command: String,
    data: Vec<u8>,
}

/// Frames out of the bytes the receiver sends, whatever their cut.
#[derive(Default)]
struct Parser {
    buf: Vec<u8>,
}

/// A decimal field of at most `max` digits.
fn number(b: &[u8], max: usize) -> Result<u64, String> {
    if b.is_empty() || b.len() > max || !b.iter().all(u8::is_ascii_digit) {
        return Err(format!(
            "not a RELP frame (bad number `{}`)",
            String::from_utf8_lossy(b)
        ));
    }
    Ok(b.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

impl Parser {
    /// The next whole frame in the buffer, if any.
    fn next(&mut self) -> Result<Option<Frame>, String> {
        let b = &self.buf;
        let Some(s1) = b.iter().position(|&c| c == b' ') else {
            return if b.len() > 10 {
                Err("not a RELP frame".into())
            } else {
                Ok(None)
            };
        };
        let txnr = number(&b[..s1], 9)?;
        let rest = &b[s1 + 1..];
        let Some(s2) = rest.iter().position(|&c| c == b' ') else {
            return if rest.len() > 32 {
                Err("not a RELP frame".into())
            } else {
                Ok(None)
            };
        };
        let command = String::from_utf8_lossy(&rest[..s2]).into_owned();
        let rest = &rest[s2 + 1..];
        let Some(end) = rest.iter().position(|&c| c == b' ' || c == b'\n') else {
            return if rest.len() > 9 {
                Err("not a RELP frame".into())
            } else {
                Ok(None)
            };
        };
        let len = number(&rest[..end], 9)? as usize;
        if len > MAX_RESPONSE {
            return Err(format!("the receiver sent a frame of {len} bytes"));
        }
        // Header, then ` DATA` when there is data, then LF.
        let head = s1 + 1 + s2 + 1 + end;
        let data_at = head + usize::from(len > 0);
        let total = data_at + len + 1;
        if self.buf.len() < total {
            return Ok(None);
        }
        if (len > 0 && self.buf[head] != b' ') || self.buf[total - 1] != b'\n' {
            return Err("not a RELP frame (no trailer)".into());
        }
        let data = self.buf[data_at..data_at + len].to_vec();
        self.buf.drain(..total);
        Ok(Some(Frame {
            txnr,
            command,
            data,
        }))
    }
}

/// What the reader learned from the receiver's frames.
#[derive(Default)]
struct Answers {
    parser: Parser,
    /// Transactions answered `200`, not yet taken by the session.
    ok: Vec<u64>,
    /// The transaction of an `open` or `close` waiting for its answer,
    /// and that answer's data once it came.
    asking: Option<u64>,
    reply: Option<Vec<u8>>,
}

/// Take what the receiver sent: `rsp` frames; `serverclose` or a refusal
/// ends the session (its frames are sent again on the next).
fn on_bytes(a: &mut Answers, bytes: &[u8]) -> Result<(), String> {
    a.parser.buf.extend_from_slice(bytes);
    while let Some(f) = a.parser.next()? {
        match f.command.as_str() {
            "rsp" if f.data.starts_with(b"200") => {
                if a.asking == Some(f.txnr) {
                    a.reply = Some(f.data);
                } else {
                    a.ok.push(f.txnr);
                }
            }
            "rsp" => {
                return Err(format!(
                    "the receiver refused transaction {}: {}",
                    f.txnr,
                    String::from_utf8_lossy(&f.data).trim_end()
                ))
            }
            "serverclose" => return Err("the receiver closed the session (serverclose)".into()),
            other => {
                return Err(format!(
                    "the receiver sent an unknown RELP command `{other}`"
                ))
            }
        }
    }
    Ok(())
}

/// A `TXNR COMMAND LEN [DATA]` frame.
fn frame(txnr: u64, command: &str, data: &[u8]) -> Vec<u8> {
    let mut f = format!("{txnr} {command} {}", data.len()).into_bytes();
    if !data.is_empty() {
        f.push(b' ');
        f.extend_from_slice(data);
    }
    f.push(b'\n');
    f
}

struct Session {
    link: Link,
    answers: Arc<Mutex<Answers>>,
    next: u64,
    /// Frames sent and not yet acknowledged: (txnr, seq, message).
    inflight: VecDeque<(u64, u64, Arc<[u8]>)>,
}

impl Session {
    fn lock(&self) -> std::sync::MutexGuard<'_, Answers> {
        self.answers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forget what the receiver acknowledged.
    fn absorb(&mut self) {
        let mut ok = std::mem::take(&mut self.lock().ok);
        if ok.is_empty() {
            return;
        }
        ok.sort_unstable();
        // Answers come in order as a rule: the oldest frames go from the
        // front; any others are looked for in the whole window.
        let mut rest = Vec::new();
        for t in ok {
            if self.inflight.front().is_some_and(|f| f.0 == t) {
                self.inflight.pop_front();
            } else {
                rest.push(t);
            }
        }
        if !rest.is_empty() {
            self.inflight
                .retain(|(t, _, _)| rest.binary_search(t).is_err());
        }
    }

    /// Wait until `done` holds, the receiver goes away, or `deadline`.
    async fn wait(
        &mut self,
        deadline: Instant,
        what: &str,
        mut done: impl FnMut(&mut Session) -> bool,
    ) -> io::Result<()> {
        self.absorb();
        if done(self) {
            return Ok(());
        }
        // What waits in the buffer must go before its answer can come.
        let left = deadline.saturating_duration_since(Instant::now());
        self.link.flush(left.max(Duration::from_millis(1))).await?;
        loop {
            self.absorb();
            if done(self) {
                return Ok(());
            }
            if let Some(e) = self.link.ended.error() {
                return Err(e);
            }
            let notified = self.link.ended.notify.notified();
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                self.absorb();
                if done(self) {
                    return Ok(());
                }
                return Err(io::Error::new(io::ErrorKind::TimedOut, what.to_string()));
            }
        }
    }

    /// Send `command` and wait for its answer's data.
    async fn ask(&mut self, command: &str, data: &[u8], limit: Duration) -> io::Result<Vec<u8>> {
        let txnr = self.next;
        self.next += 1;
        {
            let mut a = self.lock();
            a.asking = Some(txnr);
            a.reply = None;
        }
        self.link.write(&frame(txnr, command, data), limit).await?;
        let what = format!(
            "the receiver did not answer `{command}` within {}",
            humantime::format_duration(limit)
        );
        self.wait(Instant::now() + limit, &what, |s| s.lock().reply.is_some())
            .await?;
        let mut a = self.lock();
        a.asking = None;
        Ok(a.reply.take().unwrap_or_default())
    }
}

/// The offers of `open`.
fn offers() -> String {
    format!(
        "relp_version=0\nrelp_software=procward,{},https://github.com/procward/procward\ncommands=syslog",
        env!("CARGO_PKG_VERSION")
    )
}

/// RELP to one receiver, with what is owed to it across sessions.
pub(super) struct Relp {
    addr: String,
    tls: Option<Result<Tls, String>>,
    window: usize,
    limit: Duration,
    session: Option<Session>,
    /// Frames of a broken session not acknowledged: sent again first.
    resend: VecDeque<(u64, Arc<[u8]>)>,
}

impl Relp {
    pub(super) fn new(
        addr: &str,
        tls: Option<Result<Tls, String>>,
        window: usize,
        limit: Duration,
    ) -> Relp {
        Relp {
            addr: addr.to_string(),
            tls,
            window,
            limit,
            session: None,
            resend: VecDeque::new(),
        }
    }

    /// Open a session: connect, `open`, check the receiver takes syslog.
    async fn open(&mut self) -> io::Result<Session> {
        let tls = match &self.tls {
            None => None,
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => return Err(io::Error::other(e.clone())),
        };
        let answers = Arc::new(Mutex::new(Answers::default()));
        let a = answers.clone();
        let on_data: OnData =
            Box::new(move |b| on_bytes(&mut a.lock().unwrap_or_else(|e| e.into_inner()), b));
        let link = Link::connect(&self.addr, tls, on_data).await?;
        let mut s = Session {
            link,
            answers,
            next: 1,
            inflight: VecDeque::new(),
        };
        let reply = s.ask("open", offers().as_bytes(), self.limit).await?;
        let reply = String::from_utf8_lossy(&reply);
        let takes_syslog = reply.lines().any(|l| {
            l.strip_prefix("commands=")
                .is_some_and(|c| c.split(',').any(|c| c.trim() == "syslog"))
        });
        if !takes_syslog {
            return Err(io::Error::other(format!(
                "{}: the receiver does not take RELP syslog commands (it offered: {})",
                self.addr,
                reply.replace('\n', " ")
            )));
        }
        Ok(s)
    }

    /// A session to send on, opened if needed; a broken one's frames are
    /// queued again first.
    async fn session(&mut self) -> io::Result<&mut Session> {
        if self
            .session
            .as_ref()
            .is_some_and(|s| s.link.ended.error().is_some() || s.next > TXNR_LIMIT)
        {
            let s = self.session.take().expect("some");
            if s.next > TXNR_LIMIT && s.link.ended.error().is_none() {
                self.retire(s).await;
            } else {
                self.requeue(s);
            }
        }
        if self.session.is_none() {
            let s = self.open().await?;
            self.session = Some(s);
            while let Some((seq, msg)) = self.resend.pop_front() {
                self.push(seq, msg).await?;
            }
        }
        Ok(self.session.as_mut().expect("open"))
    }

    /// Send one frame on the open session, waiting for room in the window.
    async fn push(&mut self, seq: u64, msg: Arc<[u8]>) -> io::Result<()> {
        let (window, limit) = (self.window, self.limit);
        let s = self.session.as_mut().expect("open");
        let what = format!(
            "the receiver acknowledged nothing for {} ({window} frames waiting)",
            humantime::format_duration(limit)
        );
        let r = s
            .wait(Instant::now() + limit, &what, |s| s.inflight.len() < window)
            .await;
        let txnr = s.next;
        let r = match r {
            Ok(()) => s.link.buffer(&frame(txnr, "syslog", &msg), limit).await,
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => {
                s.next += 1;
                s.inflight.push_back((txnr, seq, msg));
                Ok(())
            }
            Err(e) => {
                // This frame is the caller's to retry; the others are
                // owed (sent again on the next session).
                self.reset();
                Err(e)
            }
        }
    }

    /// Send the syslog message `msg` of event `seq`.
    pub(super) async fn send(&mut self, seq: u64, msg: &[u8]) -> io::Result<()> {
        self.session().await?;
        self.push(seq, Arc::from(msg)).await
    }

    /// The session is gone: what it had not acknowledged goes again.
    fn requeue(&mut self, mut s: Session) {
        s.absorb();
        let owed = s.inflight.drain(..).map(|(_, seq, m)| (seq, m));
        let later = std::mem::take(&mut self.resend);
        self.resend = owed.chain(later).collect();
    }

    /// An orderly end of a session: everything acknowledged, then `close`.
    async fn retire(&mut self, mut s: Session) {
        let what = "the receiver did not acknowledge everything before close";
        let acked = s
            .wait(Instant::now() + CLOSE_LIMIT, what, |s| {
                s.inflight.is_empty()
            })
            .await;
        if acked.is_ok() && s.ask("close", b"", CLOSE_LIMIT).await.is_ok() {
            s.link.close(CLOSE_LIMIT).await;
        } else {
            self.requeue(s);
        }
    }

    pub(super) fn reset(&mut self) {
        if let Some(s) = self.session.take() {
            self.requeue(s);
        }
    }

    /// The lowest seq sent and not acknowledged (`None`: none).
    pub(super) fn unacknowledged(&mut self) -> Option<u64> {
        let s = self.session.as_mut().map(|s| {
            s.absorb();
            s.inflight.iter().map(|(_, seq, _)| *seq).min()
        });
        let owed = self.resend.iter().map(|(seq, _)| *seq).min();
        s.flatten().into_iter().chain(owed).min()
    }

    /// Write the frames buffered on the session.
    pub(super) async fn flush(&mut self) -> io::Result<()> {
        let limit = self.limit;
        let Some(s) = self.session.as_mut() else {
            return Ok(());
        };
        if let Err(e) = s.link.flush(limit).await {
            self.reset();
            return Err(e);
        }
        Ok(())
    }

    /// Nothing new to send: a broken session's frames go again now.
    pub(super) async fn resend(&mut self) -> io::Result<()> {
        let broken = self
            .session
            .as_ref()
            .is_none_or(|s| s.link.ended.error().is_some());
        if broken && (!self.resend.is_empty() || self.session.is_some()) {
            self.session().await?;
        }
        Ok(())
    }

    /// Everything sent acknowledged within `hold`?
    pub(super) async fn confirm(&mut self, hold: Duration) -> io::Result<()> {
        let Some(s) = self.session.as_mut() else {
            return Err(io::Error::other("no session"));
        };
        let what = format!(
            "the receiver did not acknowledge within {}",
            humantime::format_duration(hold)
        );
        s.wait(Instant::now() + hold, &what, |s| s.inflight.is_empty())
            .await
    }

    /// At the end (stop, reload): close the session in order.
    pub(super) async fn close(&mut self) {
        if let Some(s) = self.session.take() {
            self.retire(s).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_parsed_whatever_their_cut() {
        let offers = b"200 OK\nrelp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\ncommands=syslog";
        let mut wire = format!("1 rsp {} ", offers.len()).into_bytes();
        wire.extend_from_slice(offers);
        wire.extend_from_slice(b"\n2 rsp 6 200 OK\n3 rsp 0\n0 serverclose 0\n");
        for cut in 1..wire.len() {
            let mut p = Parser::default();
            let mut got = Vec::new();
            for part in [&wire[..cut], &wire[cut..]] {
                p.buf.extend_from_slice(part);
                while let Some(f) = p.next().unwrap() {
                    got.push((f.txnr, f.command, f.data.len()));
                }
            }
            let want = vec![
                (1, "rsp".to_string(), offers.len()),
                (2, "rsp".to_string(), 6),
                (3, "rsp".to_string(), 0),
                (0, "serverclose".to_string(), 0),
            ];
            assert_eq!(got, want, "cut at {cut}");
        }
    }

    #[test]
    fn garbage_is_refused_not_buffered() {
        let mut p = Parser::default();
        p.buf.extend_from_slice(b"HTTP/1.1 400 Bad Request\r\n");
        assert!(p.next().is_err());
        let mut p = Parser::default();
        p.buf.extend_from_slice(b"1 rsp 99999999 x");
        assert!(p.next().is_err());
        let mut p = Parser::default();
        p.buf.extend_from_slice(b"1 rsp 2 OKX");
        assert!(p.next().is_err(), "a frame without its LF trailer");
    }

    #[test]
    fn a_refusal_or_serverclose_ends_the_session() {
        let mut a = Answers::default();
        on_bytes(&mut a, b"2 rsp 6 200 OK\n").unwrap();
        assert_eq!(a.ok, vec![2]);
        assert!(on_bytes(&mut a, b"3 rsp 17 500 out of memory\n")
            .unwrap_err()
            .contains("500 out of memory"));
        let mut a = Answers::default();
        assert!(on_bytes(&mut a, b"0 serverclose 0\n")
            .unwrap_err()
            .contains("serverclose"));
    }

    #[test]
    fn frames_are_written_as_librelp_reads_them() {
        assert_eq!(frame(7, "syslog", b"<13>hi"), b"7 syslog 6 <13>hi\n");
        assert_eq!(frame(9, "close", b""), b"9 close 0\n");
    }
}
