//! TLS to PostgreSQL (`DB_SSLMODE`, `DB_CA_FILE`), with rustls (already in the tree through async-nats).
//!
//! - `disable`: plain TCP, unless DATABASE_URL itself says `sslmode=require` (a URL asking for more wins).
//! - `require`: TLS. With `DB_CA_FILE` the server's certificate and host name are checked against it; without,
//!   the certificate is not checked (libpq's `require`): this stops a listener, not an impostor.
//! - `verify-full`: TLS, the certificate checked against `DB_CA_FILE` and the host name against the certificate.
//!   Refused at start without a CA file.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{DatabaseSettings, SslMode};

/// The connector every PostgreSQL connection goes through (unused under `disable`).
pub type Tls = MakeRustlsConnect;

/// Sets the TLS mode of `settings` on `config` and builds the matching connector.
pub fn configure(
    settings: &DatabaseSettings,
    config: &mut tokio_postgres::Config,
) -> anyhow::Result<Tls> {
    configure_mode(settings.ssl_mode, settings.ca_file.as_deref(), config)
}

/// `configure` from the mode and the CA file themselves.
pub fn configure_mode(
    mode: SslMode,
    ca_file: Option<&Path>,
    config: &mut tokio_postgres::Config,
) -> anyhow::Result<Tls> {
    let mode = match mode {
        SslMode::Disable if config.get_ssl_mode() == PgSslMode::Require => SslMode::Require,
        mode => mode,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("Failed to set up TLS")?;
    let client = match (mode, ca_file) {
        (SslMode::Disable, _) => {
            config.ssl_mode(PgSslMode::Disable);
            builder
                .with_root_certificates(RootCertStore::empty())
                .with_no_client_auth()
        }
        (SslMode::VerifyFull, None) => {
            anyhow::bail!("DB_SSLMODE=verify-full needs DB_CA_FILE: the CA that signs the server's certificate")
        }
        (SslMode::Require | SslMode::VerifyFull, Some(ca_file)) => {
            config.ssl_mode(PgSslMode::Require);
            builder
                .with_root_certificates(root_store(ca_file)?)
                .with_no_client_auth()
        }
        (SslMode::Require, None) => {
            config.ssl_mode(PgSslMode::Require);
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
                .with_no_client_auth()
        }
    };
    Ok(MakeRustlsConnect::new(client))
}

/// The certificates of a PEM file, as trust anchors.
fn root_store(ca_file: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let certificates = CertificateDer::pem_file_iter(ca_file)
        .with_context(|| format!("Failed to read DB_CA_FILE {}", ca_file.display()))?;
    for certificate in certificates {
        let certificate = certificate.with_context(|| {
            format!(
                "DB_CA_FILE {} holds a malformed certificate",
                ca_file.display()
            )
        })?;
        roots.add(certificate).with_context(|| {
            format!(
                "DB_CA_FILE {} holds an unusable certificate",
                ca_file.display()
            )
        })?;
    }
    anyhow::ensure!(
        !roots.is_empty(),
        "DB_CA_FILE {} holds no certificate",
        ca_file.display()
    );
    Ok(roots)
}

/// `require` without a CA: any certificate is taken, but the handshake's signatures are still checked, so the
/// session is encrypted to whoever holds the certificate's key.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
