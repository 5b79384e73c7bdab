//! tract's thread count and CPU pinning of the measuring thread.

use crate::error::Result;

/// Sets tract's matrix-multiply executor: single-threaded for `n <= 1`
/// (the default, and what latency tables of small models should use),
/// otherwise a private pool of `n` threads. A build without the
/// `multithread` feature refuses `n > 1` rather than quietly timing on one
/// thread a model the user asked to time on several.
pub fn configure(n: usize) -> Result<()> {
    use tract_linalg::multithread::{Executor, set_default_executor};
    if n <= 1 {
        set_default_executor(Executor::SingleThread);
        return Ok(());
    }
    #[cfg(feature = "multithread")]
    {
        set_default_executor(Executor::multithread(n));
        Ok(())
    }
    #[cfg(not(feature = "multithread"))]
    {
        Err(crate::error::AgentError::SingleThreadBuild { threads: n })
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
