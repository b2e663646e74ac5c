//! The kernels through NVRTC straight to machine code (CUBIN) for one SM architecture, and the
//! versions of the libraries the bench loads. Why CUBIN: see [`crate::bench::cubin`].

use std::ffi::{CStr, CString, c_char, c_int};

use cudarc::nvrtc::{result as nvrtc, sys as nvrtc_sys};

use crate::bench::cubin::{self, CodeObject};
use crate::bench::kernels;

/// Whether NVRTC can be loaded (without cudarc's panic when it cannot).
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the library; no NVRTC call is made.
    unsafe { nvrtc_sys::is_culib_present() }
}

/// Whether cuBLAS can be loaded.
pub fn cublas_present() -> bool {
    // SAFETY: as above, for libcublas.
    unsafe { cudarc::cublas::sys::is_culib_present() }
}

/// NVRTC's version (`12.4`); call only when [`nvrtc_present`].
pub fn nvrtc_version() -> Option<String> {
    let (mut major, mut minor): (c_int, c_int) = (0, 0);
    // SAFETY: writes two ints.
    unsafe { nvrtc_sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .ok()?;
    Some(format!("{major}.{minor}"))
}

/// The SM architectures this NVRTC can build (`[50, 52, …, 90]`).
pub fn supported_archs() -> Vec<u32> {
    let mut n: c_int = 0;
    // SAFETY: writes one int.
    if unsafe { nvrtc_sys::nvrtcGetNumSupportedArchs(&mut n) }
        .result()
        .is_err()
    {
        return Vec::new();
    }
    let mut v: Vec<c_int> = vec![0; usize::try_from(n).unwrap_or(0)];
    // SAFETY: `v` has room for the `n` ints NVRTC reported.
    if v.is_empty()
        || unsafe { nvrtc_sys::nvrtcGetSupportedArchs(v.as_mut_ptr()) }
            .result()
            .is_err()
    {
        return Vec::new();
    }
    v.into_iter()
        .filter_map(|a| u32::try_from(a).ok())
        .collect()
}

/// cuBLAS's version (`12.4.5`); call only when [`cublas_present`].
pub fn cublas_version() -> Option<String> {
    use cudarc::cublas::sys::{cublasGetProperty, libraryPropertyType_t as P};
    let mut parts = Vec::new();
    for p in [P::MAJOR_VERSION, P::MINOR_VERSION, P::PATCH_LEVEL] {
        let mut v: c_int = 0;
        // SAFETY: writes one int; needs no handle.
        unsafe { cublasGetProperty(p, &mut v) }.result().ok()?;
        parts.push(v.to_string());
    }
    Some(parts.join("."))
}

/// Compiles every kernel to a CUBIN for `arch` (`sm_90`), and checks what came back: an ELF
/// for that SM with every kernel in it.
pub fn compile(arch: &str) -> Result<(Vec<u8>, CodeObject), String> {
    if !nvrtc_present() {
        return Err(
            "NVRTC (libnvrtc.so.12) not found: the bench image ships it; elsewhere set LD_LIBRARY_PATH to a CUDA 12 NVRTC"
                .into(),
        );
    }
    let sm: u32 = arch
        .strip_prefix("sm_")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("`{arch}` is not an architecture like sm_90"))?;
    let version = nvrtc_version().unwrap_or_else(|| "?".into());
    let supported = supported_archs();
    if !supported.is_empty() && !supported.contains(&sm) {
        return Err(format!(
            "NVRTC {version} cannot build machine code for {arch} (it builds sm_{}…sm_{}): this GPU needs a bench image with a newer CUDA",
            supported.first().copied().unwrap_or(0),
            supported.last().copied().unwrap_or(0)
        ));
    }
    let src = CString::new(kernels::SOURCE).map_err(|e| e.to_string())?;
    let prog = nvrtc::create_program(&src, Some(c"gpuconform_bench.cu"))
        .map_err(|e| format!("nvrtc create program: {e}"))?;
    let built = build(prog, arch);
    // SAFETY: `prog` came from create_program and is destroyed once.
    let _ = unsafe { nvrtc::destroy_program(prog) };
    let bytes = built.map_err(|e| format!("NVRTC {version} for {arch}: {e}"))?;
    let object = cubin::inspect(&bytes, kernels::NAMES)
        .map_err(|e| format!("NVRTC {version} for {arch}: {e}"))?;
    if object.sm != sm {
        return Err(format!(
            "NVRTC {version} built sm_{} code when asked for {arch}",
            object.sm
        ));
    }
    if let Some(missing) = kernels::NAMES
        .iter()
        .find(|k| !object.kernels.iter().any(|o| o == *k))
    {
        return Err(format!(
            "NVRTC {version} for {arch}: kernel `{missing}` missing from the code object"
        ));
    }
    Ok((bytes, object))
}

fn build(prog: nvrtc_sys::nvrtcProgram, arch: &str) -> Result<Vec<u8>, String> {
    // A real architecture (sm_XX, not compute_XX) makes NVRTC emit machine code.
    let opts = [format!("--gpu-architecture={arch}")];
    // SAFETY: `prog` is live until the caller destroys it.
    if let Err(e) = unsafe { nvrtc::compile_program(prog, &opts) } {
        // SAFETY: as above.
        let log = unsafe { nvrtc::get_program_log(prog) }
            .map(|l| {
                // SAFETY: NVRTC's log is NUL-terminated.
                unsafe { CStr::from_ptr(l.as_ptr()) }
                    .to_string_lossy()
                    .trim()
                    .to_string()
            })
            .unwrap_or_default();
        return Err(format!("{e}: {log}"));
    }
    let mut size = 0usize;
    // SAFETY: writes one size.
    unsafe { nvrtc_sys::nvrtcGetCUBINSize(prog, &mut size) }
        .result()
        .map_err(|e| format!("no machine code ({e})"))?;
    if size == 0 {
        return Err("NVRTC returned no machine code".into());
    }
    let mut bytes: Vec<c_char> = vec![0; size];
    // SAFETY: `bytes` holds the size NVRTC reported.
    unsafe { nvrtc_sys::nvrtcGetCUBIN(prog, bytes.as_mut_ptr()) }
        .result()
        .map_err(|e| format!("read machine code: {e}"))?;
    Ok(bytes.into_iter().map(|b| b as u8).collect())
}
