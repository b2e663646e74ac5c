//! Each GPU's environment through NVML (`libnvidia-ml.so.1`, which the NVIDIA container runtime
//! mounts with the `utility` capability): clocks sampled while the bench measures, power limit,
//! ECC, MIG and persistence mode, the PCIe link. Loaded at run time like the CUDA libraries;
//! a missing library or symbol leaves the fields empty and says why, never a panic.

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_ulonglong, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use libloading::Library;

use crate::bench::fingerprint::{self, Fingerprint, Observed, PcieLink};

type Device = *mut c_void;
type Ret = c_int;
const SUCCESS: Ret = 0;
// nvmlClockType_t
const CLOCK_SM: c_uint = 1;
const CLOCK_MEM: c_uint = 2;

type FnInit = unsafe extern "C" fn() -> Ret;
type FnByBus = unsafe extern "C" fn(*const c_char, *mut Device) -> Ret;
type FnClock = unsafe extern "C" fn(Device, c_uint, *mut c_uint) -> Ret;
type FnUint = unsafe extern "C" fn(Device, *mut c_uint) -> Ret;
type FnPair = unsafe extern "C" fn(Device, *mut c_uint, *mut c_uint) -> Ret;
type FnMask = unsafe extern "C" fn(Device, *mut c_ulonglong) -> Ret;
type FnText = unsafe extern "C" fn(*mut c_char, c_uint) -> Ret;

/// A loaded, initialised NVML.
pub struct Nvml {
    // Kept alive for the function pointers below.
    _lib: Library,
    shutdown: FnInit,
    by_bus: FnByBus,
    clock: Option<FnClock>,
    max_clock: Option<FnClock>,
    power_limit: Option<FnUint>,
    ecc: Option<FnPair>,
    mig: Option<FnPair>,
    persistence: Option<FnUint>,
    link: [Option<FnUint>; 4],
    throttle: Option<FnMask>,
    driver: Option<FnText>,
}

/// A GPU's NVML handle; NVML is thread-safe, so the clock sampler may read it from its thread.
#[derive(Clone, Copy)]
pub struct Gpu(Device);
// SAFETY: an NVML device handle is an opaque pointer NVML allows from any thread.
unsafe impl Send for Gpu {}
// SAFETY: as above.
unsafe impl Sync for Gpu {}

impl Nvml {
    /// Loads and initialises NVML.
    pub fn open() -> Result<Self, String> {
        // SAFETY: loading the system's NVML runs its initialisers, which have no preconditions.
        let lib = unsafe { Library::new("libnvidia-ml.so.1") }.map_err(|e| {
            format!("NVML not loaded ({e}): run with NVIDIA_DRIVER_CAPABILITIES including utility")
        })?;
        macro_rules! sym {
            ($t:ty, $name:literal) => {
                // SAFETY: the symbol's C signature is NVML's, declared by `$t`.
                unsafe { lib.get::<$t>($name) }.ok().map(|s| *s)
            };
        }
        let init: FnInit = sym!(FnInit, b"nvmlInit_v2\0").ok_or("NVML has no nvmlInit_v2")?;
        let shutdown: FnInit = sym!(FnInit, b"nvmlShutdown\0").ok_or("NVML has no nvmlShutdown")?;
        let by_bus: FnByBus = sym!(FnByBus, b"nvmlDeviceGetHandleByPciBusId_v2\0")
            .ok_or("NVML has no nvmlDeviceGetHandleByPciBusId_v2")?;
        let nvml = Self {
            shutdown,
            by_bus,
            clock: sym!(FnClock, b"nvmlDeviceGetClockInfo\0"),
            max_clock: sym!(FnClock, b"nvmlDeviceGetMaxClockInfo\0"),
            power_limit: sym!(FnUint, b"nvmlDeviceGetEnforcedPowerLimit\0"),
            ecc: sym!(FnPair, b"nvmlDeviceGetEccMode\0"),
            mig: sym!(FnPair, b"nvmlDeviceGetMigMode\0"),
            persistence: sym!(FnUint, b"nvmlDeviceGetPersistenceMode\0"),
            link: [
                sym!(FnUint, b"nvmlDeviceGetCurrPcieLinkGeneration\0"),
                sym!(FnUint, b"nvmlDeviceGetCurrPcieLinkWidth\0"),
                sym!(FnUint, b"nvmlDeviceGetMaxPcieLinkGeneration\0"),
                sym!(FnUint, b"nvmlDeviceGetMaxPcieLinkWidth\0"),
            ],
            throttle: sym!(FnMask, b"nvmlDeviceGetCurrentClocksThrottleReasons\0"),
            driver: sym!(FnText, b"nvmlSystemGetDriverVersion\0"),
            _lib: lib,
        };
        // SAFETY: no arguments; paired with nvmlShutdown in Drop.
        let r = unsafe { init() };
        if r != SUCCESS {
            return Err(format!("nvmlInit failed (NVML error {r})"));
        }
        Ok(nvml)
    }

    /// The driver version (`580.95.05`).
    pub fn driver_version(&self) -> Option<String> {
        let f = self.driver?;
        let mut buf = [0 as c_char; 96];
        // SAFETY: NVML writes a NUL-terminated string of at most `len` bytes.
        (unsafe { f(buf.as_mut_ptr(), buf.len() as c_uint) } == SUCCESS).then(|| {
            // SAFETY: NUL-terminated, as above.
            unsafe { CStr::from_ptr(buf.as_ptr()) }
                .to_string_lossy()
                .into_owned()
        })
    }

    /// The GPU at a PCI bus id (CUDA's `0000:18:00.0`; a MIG device resolves to its parent).
    pub fn gpu(&self, bus_id: &str) -> Option<Gpu> {
        let id = CString::new(bus_id).ok()?;
        let mut dev: Device = std::ptr::null_mut();
        // SAFETY: `id` is NUL-terminated; NVML writes one handle.
        (unsafe { (self.by_bus)(id.as_ptr(), &mut dev) } == SUCCESS && !dev.is_null())
            .then_some(Gpu(dev))
    }

    fn uint(&self, f: Option<FnUint>, g: Gpu) -> Option<u32> {
        let mut v: c_uint = 0;
        // SAFETY: a live handle; NVML writes one uint.
        (unsafe { f?(g.0, &mut v) } == SUCCESS).then_some(v)
    }

    fn clock_of(&self, f: Option<FnClock>, g: Gpu, kind: c_uint) -> Option<u32> {
        let mut v: c_uint = 0;
        // SAFETY: as above.
        (unsafe { f?(g.0, kind, &mut v) } == SUCCESS).then_some(v)
    }

    fn mode(&self, f: Option<FnPair>, g: Gpu) -> Option<bool> {
        let (mut current, mut pending): (c_uint, c_uint) = (0, 0);
        // SAFETY: as above, two uints.
        (unsafe { f?(g.0, &mut current, &mut pending) } == SUCCESS).then_some(current == 1)
    }

    /// What does not change during the run.
    pub fn static_state(&self, g: Gpu) -> Fingerprint {
        let [cg, cw, mg, mw] = self.link.map(|f| self.uint(f, g));
        Fingerprint {
            max_sm_clock_mhz: self.clock_of(self.max_clock, g, CLOCK_SM),
            max_memory_clock_mhz: self.clock_of(self.max_clock, g, CLOCK_MEM),
            power_limit_w: self
                .uint(self.power_limit, g)
                .map(|mw| f64::from(mw) / 1000.0),
            ecc: self.mode(self.ecc, g),
            mig: self.mode(self.mig, g),
            persistence: self.uint(self.persistence, g).map(|p| p == 1),
            pcie: match (cg, cw, mg, mw) {
                (Some(generation), Some(width), Some(max_generation), Some(max_width)) => {
                    Some(PcieLink {
                        generation,
                        width,
                        max_generation,
                        max_width,
                    })
                }
                _ => None,
            },
            ..Fingerprint::default()
        }
    }

    /// Reads the clocks and the limiting reasons every [`fingerprint::SAMPLE_MS`] until `stop`.
    pub fn sample(&self, g: Gpu, stop: &AtomicBool) -> Sampled {
        let mut s = Sampled::default();
        loop {
            if let Some(c) = self.clock_of(self.clock, g, CLOCK_SM) {
                s.sm.push(c);
            }
            if let Some(c) = self.clock_of(self.clock, g, CLOCK_MEM) {
                s.mem.push(c);
            }
            if let Some(f) = self.throttle {
                let mut mask: c_ulonglong = 0;
                // SAFETY: a live handle; NVML writes one mask.
                if unsafe { f(g.0, &mut mask) } == SUCCESS {
                    s.reasons |= mask;
                }
            }
            if stop.load(Ordering::Relaxed) {
                return s;
            }
            std::thread::sleep(Duration::from_millis(fingerprint::SAMPLE_MS));
        }
    }
}

impl Drop for Nvml {
    fn drop(&mut self) {
        // SAFETY: paired with the successful nvmlInit in `open`.
        let _ = unsafe { (self.shutdown)() };
    }
}

/// Clock readings of one GPU over its measurements.
#[derive(Debug, Default)]
pub struct Sampled {
    sm: Vec<u32>,
    mem: Vec<u32>,
    reasons: u64,
}

impl Sampled {
    /// Into the fingerprint.
    pub fn fill(self, f: &mut Fingerprint) {
        f.sm_clock_mhz = Observed::of(&self.sm);
        f.memory_clock_mhz = Observed::of(&self.mem);
        f.throttle_reasons = fingerprint::throttle_names(self.reasons);
    }
}
