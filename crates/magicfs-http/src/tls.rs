//! `https://`: the rustls settings from a certificate chain and key in PEM
//! files, offering HTTP/2 and HTTP/1.1 by ALPN.

use crate::config::TlsFiles;
use crate::error::{HttpError, HttpResult};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// The acceptor for `files`, or why they cannot be used.
pub(crate) fn acceptor(files: &TlsFiles) -> HttpResult<TlsAcceptor> {
    let (cert, key) = (files.cert.display(), files.key.display());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| HttpError::Config(format!("--tls-cert {cert}: cannot read it: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| HttpError::Config(format!("--tls-cert {cert}: not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(HttpError::Config(format!(
            "--tls-cert {cert}: no certificate in it; give the PEM chain, the server's certificate first"
        )));
    }
    let private = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        HttpError::Config(format!("--tls-key {key}: no usable private key (PEM PKCS#8, PKCS#1 or SEC1): {e}"))
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Config(format!("TLS settings: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .map_err(|e| HttpError::Config(format!("--tls-cert {cert} and --tls-key {key} do not fit together: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
