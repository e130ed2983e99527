//! TLS material: the configured certificate, or a self-signed one generated
//! at first start into `data_dir/tls/` (key file mode 0600) and reused after.

use std::io::Write;
use std::path::{Path, PathBuf};

use caduceus_core::config::Config;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls: cannot {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("tls: {path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("tls: cannot generate a certificate: {0}")]
    Generate(String),
}

#[derive(Debug, Clone)]
pub struct TlsMaterial {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// SHA-256 of the leaf certificate (DER), as colon-separated hex.
    pub fingerprint: String,
    /// Whether this start generated the certificate.
    pub generated: bool,
}

/// The certificate to serve, generating a self-signed one if none is configured.
pub fn ensure(config: &Config) -> Result<TlsMaterial, TlsError> {
    let (cert_path, key_path, generated) = match (&config.server.tls_cert, &config.server.tls_key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone(), false),
        _ => {
            let dir = config.data_dir.join("tls");
            let cert = dir.join("cert.pem");
            let key = dir.join("key.pem");
            let generated = if cert.exists() && key.exists() {
                false
            } else {
                generate(&dir, &cert, &key, &config.server.listen)?;
                true
            };
            (cert, key, generated)
        }
    };
    let fingerprint = fingerprint(&cert_path)?;
    Ok(TlsMaterial { cert_path, key_path, fingerprint, generated })
}

fn generate(dir: &Path, cert_path: &Path, key_path: &Path, listen: &str) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Io { action: "create", path: dir.into(), source })?;
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    if let Ok(addr) = listen.parse::<std::net::SocketAddr>()
        && !addr.ip().is_unspecified()
        && !names.contains(&addr.ip().to_string())
    {
        names.push(addr.ip().to_string());
    }
    let certified = rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    write_private(key_path, certified.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(cert_path, certified.cert.pem()).map_err(|source| TlsError::Io {
        action: "write",
        path: cert_path.into(),
        source,
    })?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed tls certificate");
    Ok(())
}

/// Write a file readable only by its owner.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|source| TlsError::Io { action: "create", path: path.into(), source })?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|source| TlsError::Io {
        action: "write",
        path: path.into(),
        source,
    })
}

fn fingerprint(cert_path: &Path) -> Result<String, TlsError> {
    let first = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| TlsError::Io { action: "read", path: cert_path.into(), source: std::io::Error::other(e) })?
        .next()
        .ok_or_else(|| TlsError::NoCertificate { path: cert_path.into() })?
        .map_err(|e| TlsError::Io { action: "parse", path: cert_path.into(), source: std::io::Error::other(e) })?;
    let digest = Sha256::digest(first.as_ref());
    Ok(digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_then_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let config = caduceus_core::config::Config::with_data_dir(dir.path());
        let first = ensure(&config).unwrap();
        assert!(first.generated);
        assert_eq!(first.fingerprint.len(), 32 * 3 - 1);
        let second = ensure(&config).unwrap();
        assert!(!second.generated);
        assert_eq!(first.fingerprint, second.fingerprint);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&first.key_path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
