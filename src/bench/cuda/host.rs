//! Host ↔ device copies from pinned buffers placed on the GPU's own NUMA node ([`numa`]): the
//! allocating thread runs on that node's CPUs with that node as its preferred memory, so the
//! driver's pinning touches local pages; both are restored afterwards.

use std::path::Path;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaStream};

use super::{err, time_samples};
use crate::bench::numa;
use crate::bench::stats::summarize;
use crate::bench::{Measurement, Metric};

// <linux/mempolicy.h>
const MPOL_DEFAULT: libc::c_long = 0;
const MPOL_PREFERRED: libc::c_long = 1;

/// Restores the thread's CPU set and memory policy when dropped.
struct Bound {
    cpus: libc::cpu_set_t,
}

impl Drop for Bound {
    fn drop(&mut self) {
        // SAFETY: the calling thread's own affinity, from the set saved before binding.
        unsafe {
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.cpus);
            libc::syscall(
                libc::SYS_set_mempolicy,
                MPOL_DEFAULT,
                std::ptr::null::<u64>(),
                0,
            );
        }
    }
}

/// Runs this thread on `node`'s CPUs with `node` preferred for memory, until the guard drops.
fn bind(node: u32) -> Option<Bound> {
    let cpus = numa::cpus_of(Path::new("/sys"), node)?;
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut saved: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: writes this thread's current set into `saved`.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut saved) }
        != 0
    {
        return None;
    }
    // SAFETY: as above.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for c in cpus.into_iter().filter(|c| *c < libc::CPU_SETSIZE as usize) {
        // SAFETY: `c` is below CPU_SETSIZE.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: this thread's affinity; a CPU set the container does not allow fails cleanly.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return None;
    }
    let guard = Bound { cpus: saved };
    let mut mask = [0u64; 16];
    let (word, bit) = ((node / 64) as usize, node % 64);
    if word < mask.len() {
        mask[word] |= 1 << bit;
        // SAFETY: `mask` holds 1024 node bits, as `maxnode` says; a refusal (no NUMA support in
        // the kernel) leaves the default policy, and the CPU binding still helps first touch.
        unsafe {
            libc::syscall(
                libc::SYS_set_mempolicy,
                MPOL_PREFERRED,
                mask.as_ptr(),
                (mask.len() * 64) as libc::c_ulong,
            )
        };
    }
    Some(guard)
}

/// H2D and D2H; and whether the buffers were placed on `node`.
pub fn copies(
    ctx: &Arc<CudaContext>,
    stream: &Arc<CudaStream>,
    node: Option<u32>,
    len: usize,
    warmup: usize,
    reps: usize,
) -> Result<(Vec<Measurement>, bool), String> {
    let guard = node.and_then(bind);
    let local = guard.is_some();
    // SAFETY: filled right below before any read.
    let mut src =
        unsafe { ctx.alloc_pinned_with_flags::<u8>(len, 0) }.map_err(err("pinned alloc"))?;
    // SAFETY: only written by the device-to-host copies, then read.
    let mut back =
        unsafe { ctx.alloc_pinned_with_flags::<u8>(len, 0) }.map_err(err("pinned alloc"))?;
    {
        let s = src.as_mut_slice().map_err(err("pinned"))?;
        for (i, b) in s.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
    }
    let mut dev = stream.alloc_zeros::<u8>(len).map_err(err("alloc"))?;
    let (up, up_n) = time_samples(stream, warmup, reps, || {
        stream.memcpy_htod(&src, &mut dev).map_err(err("h2d"))
    })?;
    let (down, down_n) = time_samples(stream, warmup, reps, || {
        stream.memcpy_dtoh(&dev, &mut back).map_err(err("d2h"))
    })?;
    stream.synchronize().map_err(err("sync"))?;
    let ok = src.as_slice().map_err(err("pinned"))? == back.as_slice().map_err(err("pinned"))?;
    drop(guard);
    let mk = |metric: Metric, ms: &[f64], launches: u32| -> Result<Measurement, String> {
        let s: Vec<f64> = ms.iter().map(|t| len as f64 / (t * 1e-3) / 1e9).collect();
        Ok(Measurement {
            metric,
            unit: "GB/s".into(),
            summary: summarize(&s).ok_or("no samples")?,
            verified: ok,
            size: len as u64,
            samples: s,
            launches: Some(launches),
            max_error: None,
        })
    };
    Ok((
        vec![mk(Metric::H2d, &up, up_n)?, mk(Metric::D2h, &down, down_n)?],
        local,
    ))
}
