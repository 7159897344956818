//! RTSPS: the server's certificate. Either the one given (`--tls-cert`/`--tls-key`, PEM), or a
//! self-signed one generated on first start and kept in the data folder
//! ([`CERT_FILE`], [`KEY_FILE`], the key mode 0600), so its fingerprint (what viewers who
//! trust on first use remember) stays the same across restarts.
//!
//! The TLS listeners themselves are [`crate::rtsp_server::RtspServer::serve_tls`]'s.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use livecast_net::tls::ServerTls;

/// The generated certificate, in the data folder.
pub const CERT_FILE: &str = "rtsps-cert.pem";
/// Its private key, mode 0600.
pub const KEY_FILE: &str = "rtsps-key.pem";

/// Where the certificate came from, for the start banner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertSource {
    /// `--tls-cert`.
    Given(PathBuf),
    /// Generated now, kept at this path.
    Generated(PathBuf),
    /// Generated on an earlier start, read from this path.
    Kept(PathBuf),
}

/// The server's TLS configuration: from `cert` and `key` when given (both or neither), else
/// the certificate kept in `data_dir`, generated there if absent.
pub fn load_or_generate(
    cert: Option<&Path>,
    key: Option<&Path>,
    data_dir: Option<&Path>,
) -> anyhow::Result<(ServerTls, CertSource)> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    match (cert, key) {
        (Some(c), Some(k)) => {
            let tls = ServerTls::from_pem(&read(c)?, &read(k)?)
                .with_context(|| format!("{} and {}", c.display(), k.display()))?;
            return Ok((tls, CertSource::Given(c.to_owned())));
        }
        (None, None) => {}
        _ => bail!("--tls-cert and --tls-key go together"),
    }
    let Some(dir) = data_dir else {
        bail!(
            "no HOME or XDG_DATA_HOME to keep a certificate in: give --tls-cert and --tls-key, \
             or --tls-listen off"
        );
    };
    let (cert_path, key_path) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
    if cert_path.exists() && key_path.exists() {
        let tls =
            ServerTls::from_pem(&read(&cert_path)?, &read(&key_path)?).with_context(|| {
                format!(
                    "{} and {} (remove both to generate new ones)",
                    cert_path.display(),
                    key_path.display()
                )
            })?;
        return Ok((tls, CertSource::Kept(cert_path)));
    }
    let (cert_pem, key_pem) = generate()?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_private(&key_path, key_pem.as_bytes())?;
    std::fs::write(&cert_path, &cert_pem)
        .with_context(|| format!("writing {}", cert_path.display()))?;
    let tls = ServerTls::from_pem(cert_pem.as_bytes(), key_pem.as_bytes())
        .context("the generated certificate")?;
    Ok((tls, CertSource::Generated(cert_path)))
}

/// A self-signed certificate (ECDSA P-256) for `localhost`, this machine's name and the
/// loopback addresses, as PEM (certificate, key). Viewers check its fingerprint, not its names.
pub fn generate() -> anyhow::Result<(String, String)> {
    let mut names = vec!["localhost".to_owned()];
    if let Some(h) = hostname().filter(|h| h != "localhost") {
        names.push(h);
    }
    let mut params = rcgen::CertificateParams::new(names).context("certificate names")?;
    for ip in ["127.0.0.1", "::1"] {
        if let Ok(ip) = ip.parse() {
            params.subject_alt_names.push(rcgen::SanType::IpAddress(ip));
        }
    }
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "livecast-server");
    let key = rcgen::KeyPair::generate().context("generating a key")?;
    let cert = params
        .self_signed(&key)
        .context("signing the certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// This machine's host name, if it is a usable DNS name.
fn hostname() -> Option<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let h = h.trim().to_ascii_lowercase();
    let ok = !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    ok.then_some(h)
}

/// Writes `bytes` to `path` readable by its owner only (0600 from creation on, Unix).
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_kept_with_a_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let (a, src) = load_or_generate(None, None, Some(dir.path())).unwrap();
        assert_eq!(src, CertSource::Generated(dir.path().join(CERT_FILE)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (b, src) = load_or_generate(None, None, Some(dir.path())).unwrap();
        assert_eq!(src, CertSource::Kept(dir.path().join(CERT_FILE)));
        assert_eq!(a.fingerprint, b.fingerprint);
        // Given files are used as they are.
        let (cert, key) = (dir.path().join(CERT_FILE), dir.path().join(KEY_FILE));
        let (c, src) = load_or_generate(Some(&cert), Some(&key), None).unwrap();
        assert_eq!(src, CertSource::Given(cert.clone()));
        assert_eq!(c.fingerprint, a.fingerprint);
        let err = load_or_generate(Some(&cert), None, None).unwrap_err();
        assert_eq!(err.to_string(), "--tls-cert and --tls-key go together");
        // A certificate file without a certificate names the files.
        std::fs::write(&cert, "garbage").unwrap();
        let err = load_or_generate(None, None, Some(dir.path())).unwrap_err();
        assert!(
            format!("{err:#}").contains("remove both to generate new ones"),
            "{err:#}"
        );
    }
}
