//! Device-to-device copies for every ordered pair of GPUs, with peer access where the hardware
//! allows. One source and one destination buffer per GPU serve every pair (an 8-GPU node has
//! 56 pairs; allocating per pair cost more time than the copies); the destination is cleared
//! before each pair, so a copy that did nothing cannot pass on the previous pair's data.

use std::sync::Arc;

use cudarc::driver::sys;
use cudarc::driver::{CudaContext, CudaSlice, DevicePtr, DevicePtrMut};

use super::{err, time_samples};
use crate::bench::PeerResult;
use crate::bench::stats::summarize;

/// Bytes per peer copy.
const LEN: usize = 256 << 20;

struct Buffers {
    src: CudaSlice<u8>,
    dst: CudaSlice<u8>,
}

/// The results, and `(source, error)` for GPUs or pairs that failed.
pub fn all(
    contexts: &[Option<Arc<CudaContext>>],
    warmup: usize,
    reps: usize,
) -> (Vec<PeerResult>, Vec<(u32, String)>) {
    let mut out = Vec::new();
    let mut failed = Vec::new();
    let pattern: Vec<u8> = (0..LEN).map(|x| (x % 253) as u8).collect();
    let mut bufs: Vec<Option<Buffers>> = Vec::new();
    for (i, ctx) in contexts.iter().enumerate() {
        let b = ctx.as_ref().map(|ctx| -> Result<Buffers, String> {
            let s = ctx.default_stream();
            let src = s.clone_htod(&pattern).map_err(err("upload"))?;
            let dst = s.alloc_zeros::<u8>(LEN).map_err(err("alloc"))?;
            s.synchronize().map_err(err("sync"))?;
            Ok(Buffers { src, dst })
        });
        match b {
            Some(Ok(b)) => bufs.push(Some(b)),
            Some(Err(e)) => {
                failed.push((i as u32, format!("peer buffers on gpu{i}: {e}")));
                bufs.push(None);
            }
            None => bufs.push(None),
        }
    }
    for i in 0..contexts.len() {
        for j in 0..contexts.len() {
            if i == j {
                continue;
            }
            let (Some(src_ctx), Some(dst_ctx)) = (&contexts[i], &contexts[j]) else {
                continue;
            };
            // Split borrows: the source buffer of `i`, the destination of `j`.
            let (src, dst) = if i < j {
                let (lo, hi) = bufs.split_at_mut(j);
                (
                    lo[i].as_ref().map(|b| &b.src),
                    hi[0].as_mut().map(|b| &mut b.dst),
                )
            } else {
                let (lo, hi) = bufs.split_at_mut(i);
                (
                    hi[0].as_ref().map(|b| &b.src),
                    lo[j].as_mut().map(|b| &mut b.dst),
                )
            };
            let (Some(src), Some(dst)) = (src, dst) else {
                continue;
            };
            match pair(src_ctx, dst_ctx, src, dst, &pattern, warmup, reps) {
                Ok(summary_verified) => {
                    let (summary, verified) = summary_verified;
                    out.push(PeerResult {
                        from: i as u32,
                        to: j as u32,
                        summary,
                        verified,
                    });
                }
                Err(e) => failed.push((i as u32, format!("peer copy gpu{i} → gpu{j}: {e}"))),
            }
        }
    }
    (out, failed)
}

fn pair(
    src_ctx: &Arc<CudaContext>,
    dst_ctx: &Arc<CudaContext>,
    src: &CudaSlice<u8>,
    dst: &mut CudaSlice<u8>,
    pattern: &[u8],
    warmup: usize,
    reps: usize,
) -> Result<(crate::bench::Summary, bool), String> {
    let mut can = 0i32;
    // SAFETY: queries two valid devices.
    unsafe { sys::cuDeviceCanAccessPeer(&mut can, src_ctx.cu_device(), dst_ctx.cu_device()) }
        .result()
        .map_err(err("can access peer"))?;
    if can == 1 {
        src_ctx.bind_to_thread().map_err(err("bind"))?;
        // SAFETY: enabling twice returns an "already enabled" error, ignored.
        let _ = unsafe { sys::cuCtxEnablePeerAccess(dst_ctx.cu_ctx(), 0) };
    }
    let s_stream = src_ctx.default_stream();
    let d_stream = dst_ctx.default_stream();
    d_stream.memset_zeros(dst).map_err(err("clear"))?;
    d_stream.synchronize().map_err(err("sync"))?;
    let (ms, _launches) = time_samples(&s_stream, warmup, reps, || {
        let (sp, _g1) = src.device_ptr(&s_stream);
        let (dp, _g2) = dst.device_ptr_mut(&s_stream);
        // SAFETY: both buffers hold LEN bytes on their devices.
        unsafe {
            sys::cuMemcpyPeerAsync(
                dp,
                dst_ctx.cu_ctx(),
                sp,
                src_ctx.cu_ctx(),
                LEN,
                s_stream.cu_stream(),
            )
        }
        .result()
        .map_err(err("peer copy"))
    })?;
    s_stream.synchronize().map_err(err("sync"))?;
    let samples: Vec<f64> = ms.iter().map(|t| LEN as f64 / (t * 1e-3) / 1e9).collect();
    let back = d_stream.clone_dtoh(dst).map_err(err("download"))?;
    Ok((
        summarize(&samples).ok_or("no samples")?,
        back.as_slice() == pattern,
    ))
}
