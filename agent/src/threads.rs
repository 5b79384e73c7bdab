//! tract's thread count and CPU pinning of the measuring thread.

/// Sets tract's matrix-multiply executor: single-threaded for `n <= 1`
/// (the default, and what latency tables of small models should use),
/// otherwise a private pool of `n` threads.
pub fn configure(n: usize) {
    use tract_linalg::multithread::{Executor, set_default_executor};
    if n <= 1 {
        set_default_executor(Executor::SingleThread);
    } else {
        set_default_executor(Executor::multithread(n));
    }
}

/// Pins the calling thread to one core. Returns whether it worked (the core
/// may not exist, or the platform may not allow it).
///
/// The core is set directly rather than looked up in the process's current
/// affinity mask: a core reserved with `isolcpus` is *not* in that mask, and
/// it is exactly the core a careful user pins measurements to.
pub fn pin_current(core: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id: core })
}
