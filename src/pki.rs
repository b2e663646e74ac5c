//! Certificates the harness generates for clusters it builds: a CA, serving and client
//! certificates, and the service-account signing key.
//!
//! Used by the local cluster and by the AWS target (which hands the CA to k3s), so a kubeconfig
//! the harness writes is always backed by a CA it made and can verify. Keys are ECDSA P-256.

use std::net::IpAddr;

use chrono::Datelike;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, date_time_ymd,
};

/// Certificate generation failed (only on invalid names or a crypto backend failure).
#[derive(Debug, thiserror::Error)]
#[error("generate certificate `{subject}`")]
pub struct PkiError {
    subject: String,
    #[source]
    source: rcgen::Error,
}

/// A PEM certificate and its PEM private key.
#[derive(Debug, Clone)]
pub struct KeyedCert {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// PKCS#8 private key, PEM.
    pub key_pem: String,
}

/// A certificate authority held in memory while a cluster is set up.
pub struct Ca {
    /// The CA certificate and key.
    pub cert: KeyedCert,
    issuer: Issuer<'static, KeyPair>,
}

/// What a leaf certificate is for.
#[derive(Debug, Clone, Default)]
pub struct LeafSpec {
    /// Subject CN: the Kubernetes user name for client certificates.
    pub common_name: String,
    /// Subject O: Kubernetes groups for client certificates.
    pub organizations: Vec<String>,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// IP subject alternative names.
    pub ips: Vec<IpAddr>,
    /// Usable as a TLS server certificate.
    pub server: bool,
    /// Usable as a TLS client certificate.
    pub client: bool,
}

fn validity(params: &mut CertificateParams, years: i32) {
    let now = chrono::Utc::now();
    // A day of slack before now tolerates clock skew between harness and cluster nodes.
    let start = now - chrono::Duration::days(1);
    params.not_before = date_time_ymd(start.year(), start.month() as u8, start.day() as u8);
    params.not_after = date_time_ymd(
        now.year() + years,
        now.month() as u8,
        now.day().min(28) as u8,
    );
}

impl Ca {
    /// A new self-signed CA named `common_name`, valid ten years.
    pub fn generate(common_name: &str) -> Result<Self, PkiError> {
        let err = |source| PkiError {
            subject: common_name.to_string(),
            source,
        };
        let key = KeyPair::generate().map_err(err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, 10);
        let cert = params.self_signed(&key).map_err(err)?;
        let keyed = KeyedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        Ok(Self {
            cert: keyed,
            issuer: Issuer::new(params, key),
        })
    }

    /// A CA from its PEM certificate and key, as [`Ca::generate`] made them (the subject is
    /// rebuilt from `common_name`, so leaves chain to the stored certificate).
    pub fn from_pem(common_name: &str, cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let err = |source| PkiError {
            subject: common_name.to_string(),
            source,
        };
        let key = KeyPair::from_pem(key_pem).map_err(err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Ok(Self {
            cert: KeyedCert {
                cert_pem: cert_pem.to_string(),
                key_pem: key_pem.to_string(),
            },
            issuer: Issuer::new(params, key),
        })
    }

    /// A leaf certificate signed by this CA, valid two years.
    pub fn issue(&self, spec: &LeafSpec) -> Result<KeyedCert, PkiError> {
        let err = |source| PkiError {
            subject: spec.common_name.clone(),
            source,
        };
        let key = KeyPair::generate().map_err(err)?;
        let mut params = CertificateParams::new(spec.dns_names.clone()).map_err(err)?;
        params
            .subject_alt_names
            .extend(spec.ips.iter().map(|ip| SanType::IpAddress(*ip)));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, spec.common_name.as_str());
        for org in &spec.organizations {
            dn.push(DnType::OrganizationName, org.as_str());
        }
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        if spec.server {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if spec.client {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, 2);
        let cert = params.signed_by(&key, &self.issuer).map_err(err)?;
        Ok(KeyedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A service-account signing key: `(private PKCS#8 PEM, public SPKI PEM)`.
pub fn service_account_key() -> Result<(String, String), PkiError> {
    let key = KeyPair::generate().map_err(|source| PkiError {
        subject: "service-account signing key".into(),
        source,
    })?;
    Ok((key.serialize_pem(), key.public_key_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_pem_certificates() {
        let ca = Ca::generate("test-ca").expect("ca");
        assert!(ca.cert.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let leaf = ca
            .issue(&LeafSpec {
                common_name: "admin".into(),
                organizations: vec!["system:masters".into()],
                dns_names: vec!["localhost".into()],
                ips: vec!["127.0.0.1".parse().expect("ip")],
                server: true,
                client: true,
            })
            .expect("leaf");
        assert!(leaf.key_pem.contains("PRIVATE KEY"));
        assert_ne!(leaf.cert_pem, ca.cert.cert_pem);
        let (private, public) = service_account_key().expect("sa key");
        assert!(private.contains("PRIVATE KEY") && public.contains("PUBLIC KEY"));
    }
}
