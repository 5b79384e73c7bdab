//! Devices that report whole milliseconds (the phones of the NB201 table:
//! pixel2, samsung_a50, samsung_s7, essential_ph_1). Their reported latency
//! is a multiple of the resolution, so a bound `u` on it already implies
//! `reported <= floor(u / res) * res`: the budget holds as soon as that
//! multiple is within it, i.e. `u < (floor(C / res) + 1) * res`. Up to one
//! resolution step of room (7 % at pixel2's 14 ms) comes for free, with no
//! assumption beyond the quantisation itself, which the k samples show.

/// Tolerance when testing that a sample is a whole multiple.
const WHOLE_TOLERANCE: f64 = 1e-9;

/// The reporting step of a device, detected from its k samples: 1 ms when
/// every sample is a whole number of ms, else `None` (continuous). One
/// fractional sample is enough to rule quantisation out; fewer than two
/// samples prove nothing.
pub fn detect(ms: &[f64]) -> Option<f64> {
    let whole = |m: &f64| m.is_finite() && (m - m.round()).abs() <= WHOLE_TOLERANCE;
    (ms.len() >= 2 && ms.iter().all(whole)).then_some(1.0)
}

/// Whether an upper bound `upper_ms` on the reported latency keeps it
/// within `max_ms`, for a device reporting in steps of `resolution` (`None`:
/// continuous, the plain `upper_ms <= max_ms`).
pub fn within(upper_ms: f64, max_ms: f64, resolution: Option<f64>) -> bool {
    match resolution {
        Some(step) if step > 0.0 => upper_ms < ((max_ms / step).floor() + 1.0) * step,
        _ => upper_ms <= max_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_ms_samples_are_detected_and_one_fraction_rules_it_out() {
        assert_eq!(detect(&[9.0, 17.0, 33.0, 16.0]), Some(1.0));
        assert_eq!(detect(&[9.0, 17.0, 33.5, 16.0]), None);
        assert_eq!(detect(&[3.6456, 7.5778]), None);
        assert_eq!(detect(&[9.0]), None);
        assert_eq!(detect(&[]), None);
    }

    #[test]
    fn a_quantised_device_may_use_the_step_below_the_next_integer() {
        // Reported 14 ms meets C = 14; a bound of 14.7 means reported <= 14.
        assert!(within(14.7, 14.0, Some(1.0)));
        assert!(!within(15.0, 14.0, Some(1.0)));
        assert!(!within(14.7, 14.0, None));
        assert!(within(14.0, 14.0, None));
        // A fractional budget: reported <= 14.5 means reported <= 14.
        assert!(within(14.9, 14.5, Some(1.0)));
        assert!(!within(15.2, 14.5, Some(1.0)));
    }
}
