//! The stages of one reconcile pass, one file per component of the stack. Each is a method of
//! [`super::world::World`] called from [`super::world::World::reconcile`] in the order a real
//! node goes through them.

mod device_plugin;
pub(in crate::sim) mod dra;
mod kubelet;
mod mig;
mod policy;
pub(in crate::sim) mod upgrade;
