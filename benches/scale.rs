//! The harness's own cost at scale, without a cluster: GPU-node discovery over the node list and
//! the labels and allocatable judgements of every GPU node, at 500, 2,000 and 5,000 nodes, as
//! the check phase does them after one list. The node objects are published real nodes
//! (`tests/data/real-nodes/`: an AWS p3.2xlarge and a g4dn.xlarge with their GFD/NFD labels and
//! capacity), renamed. Numbers and the goal (check phase at 5,000 nodes within 3 s) in
//! docs/performance.md.
//!
//!   cargo bench --bench scale

use std::collections::BTreeMap;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::Node;

use gpuconform::catalog::Catalog;
use gpuconform::checks::asked::Asked;
use gpuconform::plan::driver::{DriverExpect, DriverRule};
use gpuconform::target::gpu_nodes::classify;

// The library keeps its test data loader to tests; the bench reads the same files with it.
#[allow(dead_code)]
#[path = "../src/fixture/real_nodes.rs"]
mod real_nodes;

/// `n` node objects: published p3.2xlarge and g4dn.xlarge nodes in turn, renamed.
fn nodes(n: usize) -> Vec<Node> {
    let kinds = [
        real_nodes::load(real_nodes::P3),
        real_nodes::load(real_nodes::G4DN),
    ];
    (0..n)
        .map(|i| kinds[i % 2].node(&format!("gpu-{i:05}")))
        .collect()
}

fn check_phase(c: &mut Criterion) {
    let catalog = Catalog::embedded().expect("the embedded catalog");
    let asked = Asked::plain("single");
    let rule = DriverRule {
        expect: DriverExpect::Any,
        field: String::new(),
        file: "bench".into(),
        line: None,
    };
    let mut group = c.benchmark_group("check-phase");
    group.sample_size(10);
    for n in [500usize, 2_000, 5_000] {
        let list = nodes(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("discovery", n), &list, |b, l| {
            b.iter(|| classify(l, &catalog, &[]))
        });
        let found = classify(&list, &catalog, &[]);
        assert_eq!(
            found.nodes.len(),
            n,
            "every node is a GPU node of a known type"
        );
        let by_name: BTreeMap<String, &Node> = list
            .iter()
            .map(|n| (n.metadata.name.clone().unwrap_or_default(), n))
            .collect();
        group.bench_with_input(BenchmarkId::new("labels+allocatable", n), &found, |b, d| {
            b.iter(|| {
                let mut problems = 0usize;
                for g in &d.nodes {
                    let node = by_name[&g.name];
                    problems +=
                        gpuconform::checks::labels::problems(node, g, &rule, 0, &asked).len();
                    problems += gpuconform::checks::allocatable::problems(node, g, &asked).len();
                }
                problems
            })
        });
    }
    group.finish();
}

criterion_group!(benches, check_phase);
criterion_main!(benches);
