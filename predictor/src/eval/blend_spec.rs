//! The blends `eval` reports NASFLAT at, all from one transfer per target.

use crate::blend::BlendRule;
use crate::error::{PredictorError, Result};

/// One blend `eval` evaluates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BlendSpec {
    /// The blend rule, with the served stack rules.
    Rule(BlendRule),
    /// The served predictor before its choices were made without the test
    /// devices: weight 0.85 and [`crate::baselines::StackRules::LEGACY`]
    /// (both chosen on the 12 test tasks), kept for before/after tables.
    Legacy,
}

/// Weight of the stack in [`BlendSpec::Legacy`] (the old `DEFAULT_BLEND`,
/// picked from {0, 0.5, 0.7, 0.85} on seeds 0-2 of the 12 test tasks).
pub const LEGACY_BLEND: f64 = 0.85;

impl BlendSpec {
    /// Whether the linear stack may carry weight.
    pub fn needs_stack(self) -> bool {
        match self {
            BlendSpec::Rule(r) => r.needs_stack(),
            BlendSpec::Legacy => true,
        }
    }
}

impl std::fmt::Display for BlendSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlendSpec::Rule(r) => write!(f, "{r}"),
            BlendSpec::Legacy => f.write_str("legacy"),
        }
    }
}

impl std::str::FromStr for BlendSpec {
    type Err = PredictorError;
    fn from_str(s: &str) -> Result<Self> {
        if s.trim().eq_ignore_ascii_case("legacy") {
            return Ok(BlendSpec::Legacy);
        }
        s.parse::<BlendRule>().map(BlendSpec::Rule).map_err(|_| {
            PredictorError::input(
                "blend",
                "a weight in [0, 1], `loo`, `loo-min` or `legacy`",
                format!("`{s}`"),
            )
        })
    }
}
