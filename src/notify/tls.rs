//! A TLS handshake that failed, said in words an operator acts on (the
//! text of PW3002): which certificate, what is wrong with it, what to do.

use super::link::Tls;
use rustls::{AlertDescription, CertificateError, Error};
use std::io;

fn when(t: rustls::pki_types::UnixTime) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.as_secs());
    humantime::format_rfc3339_seconds(at).to_string()
}

/// What is wrong with the receiver's certificate.
fn certificate(e: &CertificateError, t: &Tls) -> String {
    let name = t.server_name();
    match e {
        CertificateError::Expired => "the receiver's certificate has expired".into(),
        CertificateError::ExpiredContext { not_after, .. } => format!(
            "the receiver's certificate has expired (valid until {})",
            when(*not_after)
        ),
        CertificateError::NotValidYet => "the receiver's certificate is not valid yet".into(),
        CertificateError::NotValidYetContext { not_before, .. } => format!(
            "the receiver's certificate is not valid yet (valid from {}; is this host's clock right?)",
            when(*not_before)
        ),
        CertificateError::UnknownIssuer => format!(
            "the receiver's certificate is not signed by a CA in {} (tls.ca)",
            t.ca
        ),
        CertificateError::BadSignature => format!(
            "the receiver's certificate has a bad signature (not issued by the CA in {} it names)",
            t.ca
        ),
        CertificateError::NotValidForName => {
            format!("the receiver's certificate is not for {name} (tls.server-name)")
        }
        CertificateError::NotValidForNameContext { presented, .. } => format!(
            "the receiver's certificate is not for {name} (tls.server-name); it is for {}",
            presented.join(", ")
        ),
        CertificateError::Revoked => "the receiver's certificate is revoked".into(),
        other => format!("the receiver's certificate is not accepted: {other:?}"),
    }
}

/// A handshake failure of the sink with TLS settings `t`, explained.
pub(super) fn explain(e: io::Error, t: &Tls) -> io::Error {
    let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<Error>()) else {
        let text = match e.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => format!(
                "the receiver ended the connection during the TLS handshake ({e}): is it a TLS \
                 port, and does it want a client certificate (tls.cert, tls.key)?"
            ),
            _ => format!("TLS handshake failed: {e}"),
        };
        return io::Error::new(e.kind(), text);
    };
    let text = match inner {
        Error::InvalidCertificate(c) => certificate(c, t),
        Error::AlertReceived(
            a @ (AlertDescription::CertificateRequired
            | AlertDescription::HandshakeFailure
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::AccessDenied),
        ) => format!(
            "the receiver refused the TLS connection ({a:?}): it may want a client certificate \
             it accepts (tls.cert, tls.key)"
        ),
        Error::AlertReceived(a) => format!("the receiver refused the TLS connection ({a:?})"),
        Error::NoCertificatesPresented => "the receiver presented no certificate".into(),
        other => format!("TLS handshake failed: {other}"),
    };
    io::Error::new(io::ErrorKind::InvalidData, text)
}
