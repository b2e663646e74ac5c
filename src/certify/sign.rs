//! The bundle's signature: ed25519 over the bytes of `SHA256SUMS`, with keys in the PEM files
//! OpenSSL writes (`openssl genpkey -algorithm ed25519 -out key.pem`, `openssl pkey -in key.pem
//! -pubout -out pub.pem`), so a reviewer can check a bundle without gpuconform:
//! `openssl pkeyutl -verify -pubin -inkey pub.pem -rawin -in SHA256SUMS -sigfile SHA256SUMS.sig`.

use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, UnparsedPublicKey};
use base64::Engine as _;

/// The ed25519 SubjectPublicKeyInfo DER before the 32 key bytes (RFC 8410).
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A key file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// It cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not the PEM block, or not an ed25519 key.
    #[error("{path}: {why}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// The DER inside the PEM block `label` of `path`.
fn pem(path: &Path, label: &str) -> Result<Vec<u8>, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let bad = |why: String| KeyError::Format {
        path: path.to_path_buf(),
        why,
    };
    let body = text
        .split_once(&begin)
        .and_then(|(_, rest)| rest.split_once(&end))
        .map(|(b, _)| b)
        .ok_or_else(|| bad(format!("no `{begin}` block")))?;
    let b64: String = body.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| bad(format!("the {label} block is not base64: {e}")))
}

/// Signs `message` with the PKCS#8 ed25519 private key in `path`.
pub fn sign(path: &Path, message: &[u8]) -> Result<Vec<u8>, KeyError> {
    let der = pem(path, "PRIVATE KEY")?;
    // OpenSSL writes PKCS#8 v1 (no public key inside); aws-lc accepts it here.
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(|e| KeyError::Format {
        path: path.to_path_buf(),
        why: format!("not an ed25519 private key (PKCS#8): {e}"),
    })?;
    Ok(pair.sign(message).as_ref().to_vec())
}

/// Whether `signature` over `message` verifies with the ed25519 public key in `path`.
pub fn verify(path: &Path, message: &[u8], signature: &[u8]) -> Result<bool, KeyError> {
    let der = pem(path, "PUBLIC KEY")?;
    let key = der
        .strip_prefix(&SPKI_PREFIX[..])
        .filter(|k| k.len() == 32)
        .ok_or_else(|| KeyError::Format {
            path: path.to_path_buf(),
            why: "not an ed25519 public key (SubjectPublicKeyInfo, RFC 8410)".into(),
        })?;
    Ok(UnparsedPublicKey::new(&ED25519, key)
        .verify(message, signature)
        .is_ok())
}
