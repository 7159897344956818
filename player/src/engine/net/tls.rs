//! `rtsps://`: the TLS handshake of the RTSP connection and whom it trusts. By default trust on
//! first use: the fingerprint of the server's certificate is remembered per `host:port` in a
//! known-hosts file ([`livecast_proto::trust`]); a server that later shows another certificate
//! is refused (the session fails, no retrying) unless [`TlsConfig::accept_new_fingerprint`].
//! With [`TlsConfig::ca`] the certificate must instead chain to that CA and name the host.

use std::path::{Path, PathBuf};

use livecast_net::tls::{self as nettls, ClientTrust};
use livecast_proto::trust::{host_key, Fingerprint, KnownHosts, Trust};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;

/// The known-hosts file's name in the data folder.
pub const KNOWN_HOSTS_FILE: &str = "known_hosts";

/// Whom an `rtsps://` server must be.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// Verify the certificate against the CA certificates in this PEM file instead.
    pub ca: Option<PathBuf>,
    /// The known-hosts file; `None`: [`KNOWN_HOSTS_FILE`] in the data folder.
    pub known_hosts: Option<PathBuf>,
    /// Trust a server whose certificate changed, replacing the stored fingerprint.
    pub accept_new_fingerprint: bool,
}

/// Why no connection came up.
#[derive(Debug)]
pub enum ConnectError {
    /// The handshake or the network failed: worth another try.
    Io(std::io::Error),
    /// The server is not the one trusted: trying again would meet the same certificate.
    Untrusted(String),
}

/// The TLS handshake on `tcp` to `host:port`, then the trust decision.
pub async fn handshake(
    cfg: &TlsConfig,
    host: &str,
    port: u16,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, ConnectError> {
    let key = host_key(host, port);
    let untrusted = |why: String| ConnectError::Untrusted(why);
    let trust = match &cfg.ca {
        Some(ca) => {
            let pem = std::fs::read(ca)
                .map_err(|e| untrusted(format!("reading the CA file {}: {e}", ca.display())))?;
            let certs = nettls::certificates_from_pem(&pem)
                .map_err(|e| untrusted(format!("the CA file {}: {e}", ca.display())))?;
            ClientTrust::Roots(certs)
        }
        None => ClientTrust::Fingerprint,
    };
    let config = nettls::client_config(trust).map_err(|e| untrusted(e.to_string()))?;
    let name = nettls::server_name(host).map_err(|e| untrusted(e.to_string()))?;
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| match invalid_certificate(&e) {
            Some(why) => untrusted(format!(
                "the certificate of {key} is not trusted ({}): {why}",
                cfg.ca
                    .as_deref()
                    .map_or("".into(), |p| p.display().to_string())
            )),
            None => ConnectError::Io(e),
        })?;
    if cfg.ca.is_some() {
        return Ok(stream);
    }
    let presented = nettls::peer_fingerprint(stream.get_ref().1)
        .ok_or_else(|| untrusted(format!("{key} presented no certificate")))?;
    let file = match &cfg.known_hosts {
        Some(f) => f.clone(),
        None => livecast_server::data_dir()
            .map(|d| d.join(KNOWN_HOSTS_FILE))
            .ok_or_else(|| {
                untrusted("no HOME or XDG_DATA_HOME to keep known servers in: give --tls-ca".into())
            })?,
    };
    trust_on_first_use(&file, &key, presented, cfg.accept_new_fingerprint).map_err(untrusted)?;
    Ok(stream)
}

/// The verifier's complaint, if the handshake failed on the certificate.
fn invalid_certificate(e: &std::io::Error) -> Option<String> {
    match e.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::InvalidCertificate(c) => Some(format!("{c:?}")),
        _ => None,
    }
}

/// Checks `presented` for `key` against the known-hosts `file`, storing it when new (or
/// changed and `accept`). `Err`: why the server is refused, for the viewer.
pub fn trust_on_first_use(
    file: &Path,
    key: &str,
    presented: Fingerprint,
    accept: bool,
) -> Result<(), String> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("reading {}: {e}", file.display())),
    };
    let mut known = KnownHosts::parse(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    match known.check(key, presented) {
        Trust::Known => return Ok(()),
        Trust::New => {
            tracing::info!(server = key, fingerprint = %presented, file = %file.display(),
                "trusting a new server's certificate (first use)");
        }
        Trust::Changed { stored } if accept => {
            tracing::warn!(server = key, old = %stored, new = %presented, file = %file.display(),
                "accepted the server's new certificate");
        }
        Trust::Changed { stored } => return Err(changed_message(key, stored, presented, file)),
    }
    known.set(key, presented);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, known.to_text())
        .and_then(|()| std::fs::rename(&tmp, file))
        .map_err(|e| format!("writing {}: {e}", file.display()))
}

/// The refusal of a server whose certificate is not the one trusted.
pub fn changed_message(
    key: &str,
    stored: Fingerprint,
    presented: Fingerprint,
    file: &Path,
) -> String {
    format!(
        "REFUSED: the certificate of {key} has CHANGED. Someone may be intercepting the \
         connection, or the server has a new certificate.\n  trusted:   {stored}\n  presented: \
         {presented}\nIf the server's owner confirms the new fingerprint (livecast-server prints \
         it at start), accept it with --accept-new-fingerprint (it replaces {key} in {}).",
        file.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_use_stores_then_a_change_is_refused_unless_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/known_hosts");
        let a = Fingerprint::of(b"certificate A");
        let b = Fingerprint::of(b"certificate B");
        assert_eq!(trust_on_first_use(&file, "h:8322", a, false), Ok(()));
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            format!(
                "# Servers trusted by livecast-player (rtsps://): HOST:PORT SHA-256 fingerprint.\n\
                 h:8322 {a}\n"
            )
        );
        assert_eq!(trust_on_first_use(&file, "h:8322", a, false), Ok(()));
        assert_eq!(trust_on_first_use(&file, "h:9322", b, false), Ok(()));
        assert_eq!(
            trust_on_first_use(&file, "h:8322", b, false),
            Err(changed_message("h:8322", a, b, &file))
        );
        assert_eq!(trust_on_first_use(&file, "h:8322", b, true), Ok(()));
        assert_eq!(trust_on_first_use(&file, "h:8322", b, false), Ok(()));
        assert_eq!(
            trust_on_first_use(&file, "h:8322", a, false),
            Err(changed_message("h:8322", b, a, &file))
        );
    }

    #[test]
    fn the_refusal_names_both_fingerprints_and_the_way_out() {
        let a = Fingerprint([0xaa; 32]);
        let b = Fingerprint([0x0b; 32]);
        let msg = changed_message("cam:8322", a, b, Path::new("/k/known_hosts"));
        let aa = vec!["AA"; 32].join(":");
        let bb = vec!["0B"; 32].join(":");
        assert_eq!(
            msg,
            format!(
                "REFUSED: the certificate of cam:8322 has CHANGED. Someone may be intercepting \
                 the connection, or the server has a new certificate.\n  trusted:   {aa}\n  \
                 presented: {bb}\nIf the server's owner confirms the new fingerprint \
                 (livecast-server prints it at start), accept it with --accept-new-fingerprint \
                 (it replaces cam:8322 in /k/known_hosts)."
            )
        );
    }
}
