//! TLS to the data stores, shared by PostgreSQL ([`crate::store::connect`])
//! and Redis ([`crate::relay`]): one crypto provider (rustls with ring), root
//! certificates from a PEM file or the system, the certificate checks each
//! `sslmode` asks for, and one-line reasons for a failed handshake.

use std::{error::Error as StdError, io, path::Path, sync::Arc};

use anyhow::{bail, Context};
use rustls::{
    client::{
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        WebPkiServerVerifier,
    },
    crypto::{
        verify_tls12_signature, verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms,
    },
    pki_types::{pem::PemObject, CertificateDer, ServerName, UnixTime},
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// The crypto provider of every TLS connection the node makes (ring).
pub fn provider() -> Arc<CryptoProvider> {
    install_default_provider();
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process's default provider, for libraries that build their
/// own `ClientConfig` (the redis crate). Once is enough; again is harmless.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Root certificates: those of the PEM file `path`, or the system's.
pub fn roots(path: Option<&Path>) -> anyhow::Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    match path {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read CA file {}", path.display()))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert
                    .map_err(|e| anyhow::anyhow!("CA file {} is not PEM: {e}", path.display()))?;
                store.add(cert).map_err(|e| {
                    anyhow::anyhow!("CA file {} holds a bad certificate: {e}", path.display())
                })?;
            }
            if store.is_empty() {
                bail!("CA file {} holds no certificate", path.display());
            }
        }
        None => {
            // Unreadable entries of the system store are skipped, as OpenSSL does.
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                bail!("no system root certificates found (install ca-certificates, or name a CA file)");
            }
        }
    }
    Ok(store)
}

/// How much of the server's certificate a connection checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Encrypted, the certificate unchecked (`sslmode=require`/`prefer`).
    Nothing,
    /// The chain up to a trusted root, not the name (`sslmode=verify-ca`).
    Chain,
    /// The chain and the host name (`sslmode=verify-full`, `rediss://`).
    Full,
}

/// A client configuration that checks `verify` against `roots`.
pub fn client_config(verify: Verify, roots: Option<RootCertStore>) -> anyhow::Result<ClientConfig> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let config = match verify {
        Verify::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Lenient {
                algorithms: provider.signature_verification_algorithms,
                chain: None,
            }))
            .with_no_client_auth(),
        Verify::Chain | Verify::Full => {
            let roots = match roots {
                Some(r) => r,
                None => self::roots(None)?,
            };
            let algorithms = provider.signature_verification_algorithms;
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("TLS certificate verifier")?;
            if verify == Verify::Full {
                builder.with_webpki_verifier(webpki).with_no_client_auth()
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(Lenient {
                        algorithms,
                        chain: Some(webpki),
                    }))
                    .with_no_client_auth()
            }
        }
    };
    Ok(config)
}

/// A check lighter than webpki's: no check of the certificate at all
/// (`chain: None`), or its chain up to a trusted root without the host name.
/// The handshake's signatures are always checked, with the provider's
/// algorithms as webpki does, so the session is encrypted to whoever holds the
/// presented key.
#[derive(Debug)]
struct Lenient {
    /// The provider's signature algorithms.
    algorithms: WebPkiSupportedAlgorithms,
    /// The chain check, when the chain is to be checked.
    chain: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        // webpki checks the chain first, so a name mismatch is only ever
        // reported on a good chain.
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    // Same shape as verify_tls12_signature: rustls's verifier trait asks for both.
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The rustls error somewhere in `e`'s chain, if a TLS handshake failed.
pub fn rustls_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    if let Some(r) = e.downcast_ref::<rustls::Error>() {
        return Some(r);
    }
    // `io::Error::source` skips the error it wraps, so look inside.
    if let Some(inner) = e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
        if let Some(r) = rustls_error(inner) {
            return Some(r);
        }
    }
    // The redis crate keeps causes as `Arc<dyn Error>`.
    if let Some(inner) = e.downcast_ref::<Arc<dyn StdError + Send + Sync>>() {
        if let Some(r) = rustls_error(inner.as_ref()) {
            return Some(r);
        }
    }
    e.source().and_then(rustls_error)
}

/// Why a handshake failed, in words an operator can act on.
pub fn reason(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => {
                "the server's certificate is not signed by a trusted CA".into()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "the server's certificate does not name the host connected to".into()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired".into()
            }
            other => format!("the server's certificate is invalid ({other:?})"),
        },
        other => other.to_string(),
    }
}
