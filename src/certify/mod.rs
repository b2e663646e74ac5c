//! Vendor certification: `gpuconform certify` runs a plan under the strict [`profile`] and
//! writes a self-contained [`bundle`] (PRODUCT.yaml, the inventory, the AI-conformance
//! checklist of [`ai`], the reports and the event log, `SHA256SUMS` of [`sums`] and the ed25519
//! signature of [`sign`]); `gpuconform verify` checks one ([`verify`], [`consistency`]); no
//! bundle is sealed with a credential in it ([`scan`]).

pub mod ai;
pub mod bundle;
pub mod consistency;
pub mod profile;
pub mod scan;
pub mod sign;
pub mod sums;
pub mod verify;

#[cfg(test)]
mod tests;
