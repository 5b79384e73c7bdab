//! Independent pieces of work side by side on scoped threads.
//!
//! Candle runs with one thread per op in `nasflat-host` (small training
//! batches are fastest that way), so the harness and whole-space prediction
//! spread their own independent work (trials, prediction passes) over the
//! cores instead; a rayon pool would be limited by that same setting.

use crate::error::{PredictorError, Result};

/// The cores each of `jobs` concurrent jobs may use (at least 1).
pub fn cores_per_job(jobs: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    (cores / jobs.max(1)).max(1)
}

/// Splits `items` into at most `threads` contiguous groups, runs `work` on
/// every item of a group on that group's own thread, and concatenates the
/// results in item order, so the output does not depend on `threads`. The
/// first error (in item order) is returned; a panicking worker becomes an
/// error naming `what`.
pub fn map_in_groups<T, R, F>(
    items: &[T],
    threads: usize,
    what: &'static str,
    work: F,
) -> Result<Vec<R>>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> Result<Vec<R>> + Sync,
{
    let per_group = items.len().div_ceil(threads.max(1)).max(1);
    let work = &work;
    let parts: Vec<Result<Vec<R>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(per_group)
            .map(|group| {
                scope.spawn(move || {
                    let mut out = Vec::new();
                    for item in group {
                        out.extend(work(item)?);
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(PredictorError::internal(what, "a worker thread panicked"))
                })
            })
            .collect()
    });
    let mut out = Vec::new();
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn order_does_not_depend_on_threads_and_errors_surface() {
        let items: Vec<usize> = (0..10).collect();
        let twice = |&i: &usize| Ok(vec![i, i]);
        let one = map_in_groups(&items, 1, "t", twice).unwrap();
        for threads in [2, 3, 16] {
            assert_eq!(map_in_groups(&items, threads, "t", twice).unwrap(), one);
        }
        assert_eq!(one.len(), 20);
        assert!(
            map_in_groups(&[] as &[usize], 4, "t", twice)
                .unwrap()
                .is_empty()
        );
        let failing = |&i: &usize| {
            if i == 7 {
                Err(PredictorError::internal("item", "seven"))
            } else {
                Ok(vec![i])
            }
        };
        assert!(map_in_groups(&items, 3, "t", failing).is_err());
        let panicking = |&i: &usize| -> Result<Vec<usize>> {
            assert!(i != 4, "boom");
            Ok(vec![i])
        };
        let err = map_in_groups(&items, 2, "prediction", panicking).unwrap_err();
        assert!(err.to_string().contains("panicked"), "{err}");
    }
}
