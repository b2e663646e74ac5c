//! The `gpuconform` command. Everything lives in the library; this only hands over the exit code.

fn main() -> std::process::ExitCode {
    gpuconform::main()
}
