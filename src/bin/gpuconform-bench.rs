//! `gpuconform-bench`: see `gpuconform::bench`.

fn main() -> std::process::ExitCode {
    gpuconform::bench::cli::main()
}
