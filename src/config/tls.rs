//! The `tls` table of a syslog sink: paths checked like every file procward
//! reads (trusted path, regular file), the private key like a secret (only
//! its owner, root, may read it), and the PEM parsed, so that `procward
//! check` says which file is wrong before the daemon connects.

use super::{k, Collector, Seg, Source, TlsFiles, TlsRaw, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// RELP's default window: frames sent and not yet acknowledged.
pub const DEFAULT_WINDOW: usize = 128;
/// The largest window accepted.
pub const MAX_WINDOW: usize = 65_536;

/// A certificate or key file is never larger than this.
const PEM_MAX: u64 = 1024 * 1024;

/// What a sink's TLS files hold, parsed.
pub struct Material {
    pub roots: Vec<CertificateDer<'static>>,
    pub client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Material({} CA certificates)", self.roots.len())
    }
}

/// Read a certificate or key file: trusted path, regular file, bounded.
fn read(path: &Path) -> Result<Vec<u8>, String> {
    if !path.is_absolute() {
        return Err(format!("{} must be an absolute path", path.display()));
    }
    crate::sys::trust::config_file(path)?;
    // Followed through links (a CA in /etc/ssl/certs often is one): the
    // trust walk above checked every component.
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    crate::sys::fs::read_all_bounded(f, path, PEM_MAX).map_err(|e| match e.kind() {
        std::io::ErrorKind::FileTooLarge => e.to_string(), // names the file
        _ => format!("{}: {e}", path.display()),
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not PEM certificates ({e})", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no certificate in it (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// A private key: a secret, so readable by its owner (root) only.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read(path)?;
    let mode = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        let p = path.display();
        return Err(format!(
            "{p} is a private key, but its mode {:o} lets others read it; run: chmod 600 {p}",
            mode & 0o777
        ));
    }
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| format!("{}: no PEM private key in it ({e})", path.display()))
}

/// Read and parse what `files` names (at start and at each reload).
pub fn load(files: &TlsFiles) -> Result<Material, String> {
    load_keyed(files).map_err(|(_, e)| e)
}

/// `load`, saying which key of the table names the file that is wrong.
fn load_keyed(files: &TlsFiles) -> Result<Material, (&'static str, String)> {
    let roots = certificates(&files.ca).map_err(|e| ("ca", e))?;
    let client = match &files.client {
        None => None,
        Some((cert, key)) => Some((
            certificates(cert).map_err(|e| ("cert", e))?,
            private_key(key).map_err(|e| ("key", e))?,
        )),
    };
    Ok(Material { roots, client })
}

/// The host part of `host:port` (`[v6]:port` too).
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Check sink number `i`'s `tls` table against its transport.
pub(super) fn validate(
    c: &mut Collector,
    src: &Source,
    i: usize,
    transport: Transport,
    address: &str,
    raw: Option<&TlsRaw>,
) -> Result<Option<TlsFiles>, ()> {
    let at = |key: &str| [k("sink"), k("syslog"), Seg::Index(i), k("tls"), k(key)];
    let sink = [k("sink"), k("syslog"), Seg::Index(i)];
    let raw = match (transport, raw) {
        (Transport::Tls, None) => {
            c.at(
                src,
                &sink,
                "transport = \"tls\" needs `tls = { ca = \"PATH\" }` (the CA that signs the receiver's certificate)",
            );
            return Err(());
        }
        (Transport::Tls | Transport::Relp, Some(r)) => r,
        (_, None) => return Ok(None),
        (_, Some(_)) => {
            let at = [k("sink"), k("syslog"), Seg::Index(i), k("tls")];
            c.at(src, &at, "needs transport = \"tls\" or \"relp\"");
            return Err(());
        }
    };
    let client = match (&raw.cert, &raw.key) {
        (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            let at = [k("sink"), k("syslog"), Seg::Index(i), k("tls")];
            c.at(
                src,
                &at,
                "`cert` and `key` go together (a client certificate and its key)",
            );
            return Err(());
        }
    };
    let server_name = raw
        .server_name
        .clone()
        .unwrap_or_else(|| host_of(address).to_string());
    if ServerName::try_from(server_name.as_str()).is_err() {
        c.at(
            src,
            &at("server-name"),
            format!("`{server_name}` is not a host name or an IP address"),
        );
        return Err(());
    }
    let files = TlsFiles {
        ca: raw.ca.clone(),
        client,
        server_name,
    };
    if let Err((key, e)) = load_keyed(&files) {
        c.at(src, &at(key), e);
        return Err(());
    }
    Ok(Some(files))
}

/// Check sink number `i`'s `window`: RELP only, 1 to MAX_WINDOW.
pub(super) fn window(
    c: &mut Collector,
    src: &Source,
    i: usize,
    transport: Transport,
    window: Option<usize>,
) -> Result<usize, ()> {
    let at = [k("sink"), k("syslog"), Seg::Index(i), k("window")];
    match window {
        None => Ok(DEFAULT_WINDOW),
        Some(_) if transport != Transport::Relp => {
            c.at(src, &at, "is for transport = \"relp\"");
            Err(())
        }
        Some(w) if (1..=MAX_WINDOW).contains(&w) => Ok(w),
        Some(_) => {
            c.at(src, &at, format!("must be 1 to {MAX_WINDOW}"));
            Err(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{host_of, private_key};
    use crate::config::parse_size;
    use std::os::unix::fs::PermissionsExt;

    /// A private key others can read is refused with the fix; one only
    /// root reads is parsed (and a file that is no key says so).
    #[test]
    fn a_private_key_is_a_secret() {
        let d = tempfile::tempdir().unwrap();
        let key = d.path().join("client.key");
        std::fs::write(&key, "not a key\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = private_key(&key).unwrap_err();
        assert!(e.contains("mode 644") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = private_key(&key).unwrap_err();
        assert!(e.contains("no PEM private key"), "{e}");
    }

    #[test]
    fn sizes_are_read_with_their_units() {
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("100MB"), Ok(100_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("3 parsecs").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }

    #[test]
    fn the_server_name_defaults_to_the_host_of_the_address() {
        assert_eq!(host_of("logs.example.com:2514"), "logs.example.com");
        assert_eq!(host_of("127.0.0.1:6514"), "127.0.0.1");
        assert_eq!(host_of("[::1]:6514"), "::1");
    }
}
