//! Which NUMA node a GPU hangs off, read from sysfs, so the host-copy buffers can be pinned in
//! that node's memory by a thread on that node's CPUs.
//!
//! Why: on a two-socket host (p4d, DGX) a pinned buffer on the far socket crosses the socket
//! link on every host copy and H2D/D2H read 10–30% low on half the GPUs — a false straggler
//! that moves with the scheduler. `nvidia-smi topo -m` shows the same affinity; its source
//! is `/sys/bus/pci/devices/<bus id>/numa_node` and `/sys/devices/system/node/node<N>/cpulist`.

use std::path::Path;

/// The sysfs form of a PCI bus id: CUDA's `0000:18:00.0` and NVML's `00000000:18:00.0` both
/// become `0000:18:00.0`, lowercase.
pub fn sysfs_bus_id(bus_id: &str) -> Option<String> {
    let bus_id = bus_id.trim().to_ascii_lowercase();
    let (domain, rest) = bus_id.split_once(':')?;
    let domain = u32::from_str_radix(domain, 16).ok()?;
    let (bus, devfn) = rest.split_once(':')?;
    let (dev, func) = devfn.split_once('.')?;
    let ok = |s: &str, len: usize| s.len() == len && s.chars().all(|c| c.is_ascii_hexdigit());
    (ok(bus, 2) && ok(dev, 2) && ok(func, 1)).then(|| format!("{domain:04x}:{bus}:{dev}.{func}"))
}

/// The NUMA node of a PCI device, `None` when the host has one node or does not say (`-1`).
pub fn node_of(sys_root: &Path, bus_id: &str) -> Option<u32> {
    let id = sysfs_bus_id(bus_id)?;
    let text = std::fs::read_to_string(sys_root.join("bus/pci/devices").join(id).join("numa_node"))
        .ok()?;
    text.trim()
        .parse::<i64>()
        .ok()
        .and_then(|n| u32::try_from(n).ok())
}

/// The CPUs of a NUMA node, from its `cpulist`.
pub fn cpus_of(sys_root: &Path, node: u32) -> Option<Vec<usize>> {
    let text = std::fs::read_to_string(
        sys_root
            .join("devices/system/node")
            .join(format!("node{node}"))
            .join("cpulist"),
    )
    .ok()?;
    parse_cpulist(&text)
}

/// `0-3,8-11,16` → the CPU numbers; `None` on anything malformed or empty.
pub fn parse_cpulist(text: &str) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                if b < a || b - a > 4096 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_ids_in_the_sysfs_form() {
        let table = [
            ("0000:18:00.0", Some("0000:18:00.0")),
            ("00000000:9A:00.0", Some("0000:9a:00.0")),
            ("0001:c7:1f.7\n", Some("0001:c7:1f.7")),
            ("18:00.0", None),
            ("0000:18:00", None),
            ("0000:1g:00.0", None),
        ];
        for (input, want) in table {
            assert_eq!(sysfs_bus_id(input).as_deref(), want, "{input}");
        }
    }

    #[test]
    fn cpulists() {
        assert_eq!(
            parse_cpulist("0-3,8-9,16\n"),
            Some(vec![0, 1, 2, 3, 8, 9, 16])
        );
        assert_eq!(parse_cpulist("5"), Some(vec![5]));
        for bad in ["", "\n", "3-1", "a-b", "0-3,x"] {
            assert_eq!(parse_cpulist(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn reads_a_two_socket_host() {
        // The layout of a p4d.24xlarge: GPUs 0–3 on node 0, 4–7 on node 1 (bus ids from AWS's
        // `nvidia-smi topo -m` output), 48 vCPUs per node.
        let dir = tempfile::tempdir().expect("test data");
        let root = dir.path();
        for (bus, node) in [
            ("0000:10:1c.0", "0"),
            ("0000:a0:1c.0", "1"),
            ("0000:00:1e.0", "-1"),
        ] {
            let d = root.join("bus/pci/devices").join(bus);
            std::fs::create_dir_all(&d).expect("test data");
            std::fs::write(d.join("numa_node"), format!("{node}\n")).expect("test data");
        }
        let n1 = root.join("devices/system/node/node1");
        std::fs::create_dir_all(&n1).expect("test data");
        std::fs::write(n1.join("cpulist"), "24-47,72-95\n").expect("test data");
        assert_eq!(node_of(root, "00000000:A0:1C.0"), Some(1));
        assert_eq!(node_of(root, "0000:10:1c.0"), Some(0));
        assert_eq!(node_of(root, "0000:00:1e.0"), None, "-1: no affinity");
        assert_eq!(node_of(root, "0000:ff:00.0"), None, "not there");
        let cpus = cpus_of(root, 1).expect("test data");
        assert_eq!((cpus.len(), cpus[0], cpus[47]), (48, 24, 95));
        assert_eq!(cpus_of(root, 0), None);
    }
}
