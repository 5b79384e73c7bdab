//! The choices a transfer's fit made (blend weight, the stack's rules and
//! weight), as the API reports them with a device's predictor quality. A
//! mirror of [`nasflat_predictor::fewshot::ServedChoice`] with JSON Schemas
//! (the predictor crate stays free of service crates).

use nasflat_predictor::baselines::{Anchor, StackChoice};
use nasflat_predictor::blend::BlendRule;
use nasflat_predictor::fewshot::ServedChoice;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How the blend weight was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BlendRuleKind {
    /// A fixed weight (`--blend <w>`).
    Fixed,
    /// Leave-one-out on the device's samples, one-standard-error rule.
    Loo,
    /// Leave-one-out on the device's samples, least error.
    LooMin,
}

/// How the additive model's two ridge fits are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnchorKind {
    /// The plain ridge.
    Plain,
    /// The FLOPs-anchored ridge.
    Anchored,
    /// Their mean.
    Average,
}

/// The linear stack's choice.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StackFit {
    /// Weight of the additive model (1 - weight for the source regression).
    pub additive_weight: f64,
    /// Least weight the rules allowed the additive model.
    pub min_additive_weight: f64,
    /// The sources joined only if they cut the additive model's LOO error
    /// to at most this share.
    pub source_gain: f64,
    /// How the additive model's fits are combined.
    pub anchor: AnchorKind,
    /// Whether the weight was the largest within one standard error of the
    /// least LOO error (else the least itself).
    pub one_se: bool,
}

/// Every choice of a served predictor's fit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FitChoice {
    /// How the blend weight was set.
    pub blend_rule: BlendRuleKind,
    /// Weight of the linear stack in the served blend (0 = GNN alone).
    pub blend_weight: f64,
    /// Mean squared LOO log residual at that weight on the samples.
    pub blend_loo_mse: Option<f64>,
    /// The stack's choice, when the blend uses it.
    pub stack: Option<StackFit>,
}

impl From<&StackChoice> for StackFit {
    fn from(c: &StackChoice) -> Self {
        StackFit {
            additive_weight: c.additive_weight,
            min_additive_weight: f64::from(c.rules.min_additive_step) / 10.0,
            source_gain: c.rules.source_gain,
            anchor: match c.rules.anchor {
                Anchor::Plain => AnchorKind::Plain,
                Anchor::Anchored => AnchorKind::Anchored,
                Anchor::Average => AnchorKind::Average,
            },
            one_se: c.rules.one_se,
        }
    }
}

impl From<&ServedChoice> for FitChoice {
    fn from(c: &ServedChoice) -> Self {
        FitChoice {
            blend_rule: match c.blend.rule {
                BlendRule::Fixed(_) => BlendRuleKind::Fixed,
                BlendRule::Loo => BlendRuleKind::Loo,
                BlendRule::LooMin => BlendRuleKind::LooMin,
            },
            blend_weight: c.blend.weight,
            blend_loo_mse: c.blend.loo_mse,
            stack: c.stack.as_ref().map(StackFit::from),
        }
    }
}
