//! RFC 5425: syslog over TLS, each message octet-counted. TLS has no
//! acknowledgement of its own: as for plain TCP, a frame is delivered once
//! the receiver's TCP stack has acknowledged the bytes that carried it
//! (SIOCOUTQ, counted in ciphertext bytes), and what a broken connection
//! had not acknowledged is sent again on the next. The connection ends
//! with TLS close_notify (rsyslog drops frames of a connection cut
//! without it).

use super::link::{Link, Tls};
use super::syslog::Sent;
use std::io;
use std::time::Duration;

pub(super) struct TlsConn {
    addr: String,
    tls: Result<Tls, String>,
    link: Option<Link>,
    sent: Sent,
}

/// RFC 5425 §4.3: `MSG-LEN SP SYSLOG-MSG`.
fn octet_counted(frame: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(frame.len() + 8);
    buf.extend_from_slice(frame.len().to_string().as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(frame);
    buf
}

impl TlsConn {
    pub(super) fn new(addr: &str, tls: Result<Tls, String>) -> TlsConn {
        TlsConn {
            addr: addr.to_string(),
            tls,
            link: None,
            sent: Sent::default(),
        }
    }

    /// Forget the frames the receiver's TCP stack has acknowledged.
    fn note_acks(&mut self) {
        if let Some(l) = &self.link {
            self.sent.written = l.wire();
            if let Some(u) = l.unacked() {
                self.sent.prune(u);
            }
        }
    }

    /// A connection the receiver ended: its unacknowledged frames go
    /// again. A close (EOF) is not a failure; a reset is.
    fn check_ended(&mut self) -> io::Result<()> {
        let Some(e) = self.link.as_ref().and_then(|l| l.ended.error()) else {
            return Ok(());
        };
        let l = self.link.take().expect("some");
        self.sent.written = l.wire();
        self.sent.lost(l.unacked());
        match e.kind() {
            io::ErrorKind::ConnectionAborted => Ok(()),
            _ => Err(e),
        }
    }

    async fn connect(&mut self) -> io::Result<&mut Link> {
        if self.link.is_none() {
            let tls = self.tls.as_ref().map_err(|e| io::Error::other(e.clone()))?;
            let l = Link::connect(&self.addr, Some(tls), Box::new(|_| Ok(()))).await?;
            self.sent.written = l.wire();
            self.link = Some(l);
        }
        Ok(self.link.as_mut().expect("set"))
    }

    /// Write what is owed, then `frame` (if any) of event `seq`.
    async fn write(&mut self, frame: Option<(u64, &[u8])>, limit: Duration) -> io::Result<()> {
        self.check_ended()?;
        self.note_acks();
        self.connect().await?;
        let mut frames = std::mem::take(&mut self.sent.resend);
        let new = frame.is_some();
        if let Some((seq, f)) = frame {
            frames.push((seq, octet_counted(f)));
        }
        let link = self.link.as_mut().expect("connected");
        for (i, (seq, f)) in frames.iter().enumerate() {
            if let Err(e) = link.write(f, limit).await {
                // The current frame is retried by the caller; what was
                // owed stays owed.
                self.sent.lost(None);
                let owed = &frames[i..frames.len() - usize::from(new)];
                self.sent.resend.extend(owed.iter().cloned());
                self.link = None;
                return Err(e);
            }
            self.sent.push(link.wire(), *seq, f.clone());
        }
        Ok(())
    }

    pub(super) async fn send(&mut self, frame: &[u8], seq: u64, limit: Duration) -> io::Result<()> {
        self.write(Some((seq, frame)), limit).await
    }

    /// Nothing new to send: what a broken connection owes goes now.
    pub(super) async fn resend(&mut self, limit: Duration) -> io::Result<()> {
        self.check_ended()?;
        if !self.sent.resend.is_empty() {
            self.write(None, limit).await?;
        }
        Ok(())
    }

    pub(super) fn unacknowledged(&mut self) -> Option<u64> {
        self.note_acks();
        self.sent.lowest_unacknowledged()
    }

    pub(super) fn reset(&mut self) {
        if self.link.take().is_some() {
            self.sent.lost(None);
        }
    }

    /// After a failure: every byte acknowledged, the connection kept for
    /// `hold`.
    pub(super) async fn confirm(&mut self, hold: Duration) -> io::Result<()> {
        tokio::time::sleep(hold).await;
        self.check_ended()?;
        let Some(l) = &self.link else {
            return Err(io::Error::other("the receiver closed the connection"));
        };
        match l.unacked() {
            Some(0) => {
                self.note_acks();
                Ok(())
            }
            Some(n) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{n} bytes not acknowledged by the receiver within {}",
                    humantime::format_duration(hold)
                ),
            )),
            None => Err(io::Error::other("the connection was reset")),
        }
    }

    /// TLS close_notify, then FIN.
    pub(super) async fn close(&mut self) {
        if let Some(l) = self.link.take() {
            l.close(Duration::from_secs(2)).await;
        }
    }
}
