//! The names NVIDIA's DRA driver publishes under (`kubernetes-sigs/dra-driver-nvidia-gpu`: the
//! chart's `templates/deviceclass-{gpu,mig}.yaml`, `cmd/gpu-kubelet-plugin/deviceinfo.go` and
//! `mig.go`): its driver name, DeviceClasses and device attribute names.

/// The driver's name (`spec.driver` of its ResourceSlices, the attribute domain).
pub const DRIVER: &str = "gpu.nvidia.com";
/// The DeviceClass of whole GPUs.
pub const GPU_CLASS: &str = "gpu.nvidia.com";
/// The DeviceClass of MIG devices.
pub const MIG_CLASS: &str = "mig.nvidia.com";
/// The kubelet plugin's DaemonSet (the driver chart's `<fullname>-kubelet-plugin`).
pub const PLUGIN: &str = "nvidia-dra-driver-gpu-kubelet-plugin";

/// Device attributes (qualified by [`DRIVER`] when written as `device.attributes[…]` in CEL).
pub mod attr {
    /// `gpu` or `mig` (string).
    pub const TYPE: &str = "type";
    /// `GPU-…` / `MIG-…` (string).
    pub const UUID: &str = "uuid";
    /// NVML's device name, `Tesla V100-SXM2-16GB` (string).
    pub const PRODUCT_NAME: &str = "productName";
    /// NVML's architecture, `Volta`, `Ada Lovelace` (string).
    pub const ARCHITECTURE: &str = "architecture";
    /// `7.0.0` (version).
    pub const COMPUTE_CAPABILITY: &str = "cudaComputeCapability";
    /// The driver, as semver: `580.95.5` for 580.95.05 (version).
    pub const DRIVER_VERSION: &str = "driverVersion";
    /// The MIG profile, `1g.5gb` (string, MIG devices only).
    pub const PROFILE: &str = "profile";
    /// The MIG device's GPU (string, MIG devices only).
    pub const PARENT_UUID: &str = "parentUUID";
}

/// The taint key the kubelet plugin's health monitor puts on a device after a fatal XID (its
/// value the XID), `TaintKeyXID` in the driver's `cmd/gpu-kubelet-plugin`.
pub const TAINT_XID: &str = "gpu.nvidia.com/xid";

/// Device capacity: memory in bytes.
pub const MEMORY: &str = "memory";
