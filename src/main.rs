//! The `gpuconform` command. Everything lives in the library; this only picks the allocator and
//! hands over the exit code.

// mimalloc rather than the system allocator: decoding thousands of nodes from the API server
// is millions of small allocations (label keys and values), and glibc's malloc spent a third of
// the labels check's time at 5,000 nodes in its free lists (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's option indices (`mi_option_e` in mimalloc.h, the same in its v2 and v3); the Rust
/// binding names only some of them. `tests::option_indices_are_mimallocs` pins them by the
/// linked mimalloc's default values, so a binding update that renumbers them fails the tests.
const MI_OPTION_ARENA_EAGER_COMMIT: i32 = 4;
const MI_OPTION_PURGE_DELAY: i32 = 15;

/// By default mimalloc (v3) keeps freed pages for a second and commits whole arenas eagerly, so
/// a run that decodes a 5,000-node list and drops it holds on to tens of MB it no longer uses.
/// Giving memory back at once costs no time a run can measure: at 5,000 nodes, peak RSS 190-213
/// MB with the defaults, 142-150 MB with these, the labels check 0.6-0.8 s either way
/// (docs/performance.md).
#[allow(unsafe_code)]
fn tune_allocator() {
    // A value the user set in the environment (read by mimalloc before main) is kept.
    for (option, env) in [
        (MI_OPTION_PURGE_DELAY, "MIMALLOC_PURGE_DELAY"),
        (MI_OPTION_ARENA_EAGER_COMMIT, "MIMALLOC_ARENA_EAGER_COMMIT"),
    ] {
        if std::env::var_os(env).is_none() {
            // SAFETY: mi_option_set only stores an integer in mimalloc's option table; both
            // indices exist in the linked mimalloc (the test below) and 0 is valid for both.
            unsafe { libmimalloc_sys::mi_option_set(option, 0) };
        }
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
