//! The measuring thread's CPU clock.
//!
//! On a busy machine the scheduler takes the core away from the measuring
//! thread for whole time slices (milliseconds); a run that straddles such a
//! gap is slower by the gap on the wall clock, not on the thread's CPU clock.
//! A single-threaded runtime computes only on the calling thread, so its
//! CPU time per run is the latency the run would have on an idle board.

use std::time::Duration;

use rustix::time::{ClockId, clock_gettime};

/// CPU time consumed so far by the calling thread (`CLOCK_THREAD_CPUTIME_ID`,
/// user and system time, nanosecond resolution on Linux).
pub fn thread_cpu_time() -> Duration {
    Duration::try_from(clock_gettime(ClockId::ThreadCPUTime)).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_work_of_this_thread_and_not_sleep() {
        let start = thread_cpu_time();
        std::thread::sleep(Duration::from_millis(30));
        let slept = thread_cpu_time() - start;
        let mut x = 1u64;
        let busy_start = thread_cpu_time();
        let wall = std::time::Instant::now();
        while wall.elapsed() < Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
        let busy = thread_cpu_time() - busy_start;
        assert!(slept < Duration::from_millis(10), "sleeping cost {slept:?}");
        assert!(
            busy > Duration::from_millis(5),
            "busy loop counted {busy:?}"
        );
    }
}
