//! The GPU simulator as the local cluster's companion. This adapter is the one place that knows
//! both: the local target hosts a [`Companion`] without knowing what it is, and the simulator
//! plays the GPU stack without knowing which cluster it runs in.

use crate::catalog::Catalog;
use crate::fixture::ClusterFixture;
use crate::target::local::state::ClusterDir;
use crate::target::local::{Companion, Running};

/// Starts the GPU simulator beside a local cluster.
pub struct GpuSimulator;

impl Companion for GpuSimulator {
    fn start(
        &self,
        client: kube::Client,
        fixture: &ClusterFixture,
        catalog: &Catalog,
        dir: &ClusterDir,
    ) -> Box<dyn Running> {
        let log = crate::sim::SimLog::open(&dir.log("gpu-simulator"));
        Box::new(Simulator(crate::sim::spawn(
            client,
            fixture.clone(),
            catalog.clone(),
            log,
            dir.kwok().join("pod-logs"),
        )))
    }
}

struct Simulator(crate::sim::Handle);

impl Running for Simulator {
    fn stop(self: Box<Self>) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(self.0.stop())
    }
}
