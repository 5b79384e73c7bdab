//! The environment a process that trains or predicts with this library
//! starts itself again with, because candle and glibc read it only at
//! start-up. `nasflat-host` and the criterion bench both use it, so the
//! bench measures what the host runs.
//!
//! - `RAYON_NUM_THREADS=1`: candle's thread count; small models train
//!   fastest on one thread (STACK.md), and the harness spreads its own
//!   independent work over the cores ([`crate::parallel`]).
//! - `GLIBC_TUNABLES`: glibc's default mmap threshold makes every ~1 MB
//!   activation a fresh mmap and its page faults (half the run time in the
//!   kernel in one profile, ~13 % of a training step in the bench); the
//!   raised threshold keeps those buffers on the heap.

use std::process::Command;

/// glibc's malloc settings (a value the user already set is kept).
pub const MALLOC_TUNABLES: &str =
    "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=268435456";

/// Whether this process already runs with candle's thread count set (by
/// [`configure`] or by the user), so it need not start itself again.
pub fn is_configured() -> bool {
    std::env::var_os("RAYON_NUM_THREADS").is_some()
}

/// Sets both variables on `command`, keeping a `GLIBC_TUNABLES` the user set.
pub fn configure(command: &mut Command) -> &mut Command {
    command.env("RAYON_NUM_THREADS", "1");
    if std::env::var_os("GLIBC_TUNABLES").is_none() {
        command.env("GLIBC_TUNABLES", MALLOC_TUNABLES);
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_one_candle_thread_and_keeps_the_users_malloc_settings() {
        let mut command = Command::new("true");
        configure(&mut command);
        let envs: Vec<_> = command.get_envs().collect();
        let value = |name: &str| {
            envs.iter()
                .find(|(k, _)| *k == name)
                .and_then(|(_, v)| v.and_then(|v| v.to_str()))
        };
        assert_eq!(value("RAYON_NUM_THREADS"), Some("1"));
        let expected = std::env::var_os("GLIBC_TUNABLES")
            .is_none()
            .then_some(MALLOC_TUNABLES);
        assert_eq!(value("GLIBC_TUNABLES"), expected);
    }
}
