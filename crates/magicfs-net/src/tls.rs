//! Trust roots for `https://`: the system's certificates (read as
//! `rustls-native-certs` finds them, `SSL_CERT_FILE` and `SSL_CERT_DIR`
//! included) plus the certificates of a CA file given with `--ca-file` or
//! `MAGICFS_CA_FILE`, for servers signed by a private CA.

use crate::error::{NetError, NetResult};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use ureq::tls::{Certificate, RootCerts, TlsConfig};

/// The CA file of this process, set once at start.
static CA_FILE: OnceLock<Option<PathBuf>> = OnceLock::new();
/// The roots, read on the first `https://` request.
static ROOTS: OnceLock<NetResult<Arc<Vec<Certificate<'static>>>>> = OnceLock::new();

/// Sets this process's CA file (`--ca-file`) after checking that it holds at
/// least one certificate. Without a call, `MAGICFS_CA_FILE` is read instead.
/// Call it before the first `https://` request: the roots are read once, and
/// a different file named later is refused.
pub fn set_ca_file(path: Option<&Path>) -> NetResult<()> {
    if let Some(p) = path {
        read_ca_file(p)?;
    }
    let wanted = path.map(Path::to_path_buf);
    if *CA_FILE.get_or_init(|| wanted.clone()) != wanted {
        return Err(NetError::Config("the CA file is set once per process, before the first https:// request".into()));
    }
    Ok(())
}

fn ca_file() -> Option<&'static Path> {
    CA_FILE.get_or_init(|| std::env::var_os("MAGICFS_CA_FILE").filter(|v| !v.is_empty()).map(PathBuf::from)).as_deref()
}

/// The certificates in a PEM file.
pub fn read_ca_file(path: &Path) -> NetResult<Vec<CertificateDer<'static>>> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| NetError::Config(format!("--ca-file {shown}: cannot read it: {e}")))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| NetError::Config(format!("--ca-file {shown}: not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(NetError::Config(format!(
            "--ca-file {shown}: no certificate in it; give a PEM file with -----BEGIN CERTIFICATE----- blocks"
        )));
    }
    Ok(certs)
}

fn roots() -> NetResult<Arc<Vec<Certificate<'static>>>> {
    ROOTS
        .get_or_init(|| {
            let native = rustls_native_certs::load_native_certs();
            for e in &native.errors {
                log::debug!("system certificates: {e}");
            }
            let mut certs: Vec<Certificate<'static>> =
                native.certs.iter().map(|c| Certificate::from_der(c.as_ref()).to_owned()).collect();
            if let Some(path) = ca_file() {
                let extra = read_ca_file(path)?;
                certs.extend(extra.iter().map(|c| Certificate::from_der(c.as_ref()).to_owned()));
            }
            if certs.is_empty() {
                return Err(NetError::Config(
                    "no trusted certificates: the system has none installed (install ca-certificates) and no --ca-file was given".into(),
                ));
            }
            Ok(Arc::new(certs))
        })
        .clone()
}

/// The client TLS settings: the roots above plus `extra`, aws-lc-rs as the
/// crypto provider.
pub(crate) fn client_config(extra: &[CertificateDer<'static>]) -> NetResult<TlsConfig> {
    let mut roots = roots()?;
    if !extra.is_empty() {
        let mut all = roots.as_ref().clone();
        all.extend(extra.iter().map(|c| Certificate::from_der(c.as_ref()).to_owned()));
        roots = Arc::new(all);
    }
    Ok(TlsConfig::builder()
        .root_certs(RootCerts::Specific(roots))
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .build())
}
