//! The hand-made table the search modes' unit tests share.

/// A deterministic table of `n` rows (latency ms, accuracy %) where
/// accuracy rises with latency, as it does, with noise.
pub(super) fn table(n: usize) -> (Vec<f64>, Vec<f64>) {
    let ms: Vec<f64> = (0..n)
        .map(|i| 2.0 + ((i * 7919) % 1000) as f64 / 50.0)
        .collect();
    let acc: Vec<f64> = ms
        .iter()
        .enumerate()
        .map(|(i, m)| 50.0 + 1.5 * m + ((i * 31) % 17) as f64 / 4.0)
        .collect();
    (ms, acc)
}
