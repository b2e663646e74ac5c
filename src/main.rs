//! The `gpuconform` command. Everything lives in the library; this only picks the allocator and
//! hands over the exit code.

// mimalloc rather than the system allocator: decoding thousands of nodes from the API server
// is millions of small allocations (label keys and values), and glibc's malloc spent a third of
// the labels check's time at 5,000 nodes in its free lists (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's option indices (`mi_option_e` in mimalloc.h, the same in its v2 and v3); the Rust
/// binding names only some of them. `tests::option_indices_are_mimallocs` pins them by their
/// documented defaults, so a binding update that renumbers them fails the tests.
const MI_OPTION_ARENA_EAGER_COMMIT: i32 = 4;
const MI_OPTION_PURGE_DELAY: i32 = 15;

/// By default mimalloc (v3) keeps freed pages for a second and commits whole arenas eagerly, so a run
/// that decodes a 5,000-node list and drops it holds on to tens of MB it no longer uses; a
/// conformance run is not allocation-bound after that, so give memory back at once (peak RSS at
/// 5,000 nodes: about 210 MB with the defaults, 125 MB with these; docs/performance.md).
#[allow(unsafe_code)]
fn tune_allocator() {
    // SAFETY: mi_option_set only stores an integer in mimalloc's option table; both indices
    // exist in the linked mimalloc (checked by the test below) and any value is valid for them.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
    }
}

fn main() -> std::process::ExitCode {
    tune_allocator();
    gpuconform::main()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code)]
    fn option_indices_are_mimallocs() {
        // SAFETY: mi_option_get reads mimalloc's option table.
        let (purge, arena) = unsafe {
            (
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY),
                libmimalloc_sys::mi_option_get(MI_OPTION_ARENA_EAGER_COMMIT),
            )
        };
        // The defaults of the linked mimalloc v3 for these two (options.c; unless MIMALLOC_* is
        // set in the environment, which the tests do not do).
        assert_eq!((purge, arena), (1000, 2), "mimalloc renumbered its options");
        tune_allocator();
        // SAFETY: as above.
        let after = unsafe {
            (
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY),
                libmimalloc_sys::mi_option_get(MI_OPTION_ARENA_EAGER_COMMIT),
            )
        };
        assert_eq!(after, (0, 0));
    }
}
