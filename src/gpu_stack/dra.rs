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

/// The devices `(pool, device)` a claim was allocated, in the order of its results; `None`
/// while it is not allocated. What the scheduler decided, read the same way by the checks and
/// by the simulator's kubelet plugin.
pub fn allocation(
    c: &k8s_openapi::api::resource::v1::ResourceClaim,
) -> Option<Vec<(String, String)>> {
    let results = c
        .status
        .as_ref()?
        .allocation
        .as_ref()?
        .devices
        .as_ref()?
        .results
        .as_ref()?;
    Some(
        results
            .iter()
            .map(|r| (r.pool.clone(), r.device.clone()))
            .collect(),
    )
}

/// The string attribute `name` (`uuid`, `type`, `profile`) of `device` in `pool`, from the
/// pool's slices; `None` when no slice holds the device or it has no such string attribute.
pub fn device_string<'a, I>(slices: I, pool: &str, device: &str, name: &str) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a k8s_openapi::api::resource::v1::ResourceSlice>,
{
    slices
        .into_iter()
        .filter(|s| s.spec.pool.name == pool)
        .flat_map(|s| s.spec.devices.iter().flatten())
        .find(|d| d.name == device)?
        .attributes
        .as_ref()?
        .get(name)?
        .string
        .as_deref()
}
