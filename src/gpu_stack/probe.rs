//! The accelerator probe's contract, as the AI-conformance suite's secure accelerator access
//! test defines it (`kubernetes-sigs/ai-conformance` `test/util_test.go`,
//! `test/device_probe_test.go`): the container counts the GPU device nodes it can see and prints
//! one exact line, `RESULT: ACCELERATOR_COUNT=<n>`, then sleeps so its pod stays to be read.

/// The result line's prefix; the count follows it and nothing else.
pub const PREFIX: &str = "RESULT: ACCELERATOR_COUNT=";

/// The probe's shell script: `/dev/nvidia0`, `/dev/nvidia1`, … count; `nvidiactl`,
/// `nvidia-uvm` and `nvidia-caps` do not.
pub const SCRIPT: &str = r#"count=0; for d in /dev/nvidia[0-9]*; do [ -e "$d" ] || continue; count=$((count+1)); done; echo "RESULT: ACCELERATOR_COUNT=$count"; sleep 3600"#;

/// The label value that marks the probe's pods (`gpuconform.io/check=secure-access`).
pub const CHECK: &str = "secure-access";
