//! Throwaway certificates for test servers on 127.0.0.1 (slapd, Dovecot): a private CA
//! and a leaf for `localhost` / `127.0.0.1` signed by it, so clients can be tested with
//! verification on and a custom CA, as in production.

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};

/// A server's certificate and key, PEM text (the lab's launchers take it).
pub use ucbridge_lab::services::ServerCertificate;

/// A fresh CA (its certificate, PEM) and a server certificate for `localhost` and
/// `127.0.0.1` signed by it.
pub fn localhost_certificate() -> (String, ServerCertificate) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("CA key");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).expect("leaf params");
    leaf.subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    let key = KeyPair::generate().expect("leaf key");
    let cert = leaf
        .signed_by(&key, &ca, &ca_key)
        .expect("leaf certificate");
    (
        ca.pem(),
        ServerCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        },
    )
}
