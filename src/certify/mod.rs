//! Vendor certification (issue "Vendor certification"): the bundle a run leaves for a reviewer
//! and its verification. So far: `SHA256SUMS` over the bundle ([`sums`]), the ed25519 signature
//! over it ([`sign`]), and `gpuconform verify` ([`verify`]); `gpuconform certify` (the strict
//! profile that writes the bundle, PRODUCT.yaml, the inventory, the AI-conformance evidence)
//! comes next.

pub mod sign;
pub mod sums;
pub mod verify;

#[cfg(test)]
mod tests;
