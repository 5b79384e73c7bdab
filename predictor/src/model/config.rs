//! Hyperparameters of the predictor and of its training (paper Table 20
//! defaults), all overridable from the CLI.

use serde::{Deserialize, Serialize};

use crate::error::{PredictorError, Result};
use crate::features::Supplementary;
use crate::keywords::keywords;
use nasflat_shared::SearchSpace;

/// Which message-passing module the main GNN uses (paper Section 3.2, Table 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GnnKind {
    /// Dense Graph Flow only (Eq. 1).
    Dgf,
    /// Graph attention only (Eqs. 2-3).
    Gat,
    /// Both, readouts concatenated (the paper's default).
    Ensemble,
}

keywords!(GnnKind, "gnn" {
    Dgf => "dgf" | "gcn",
    Gat => "gat",
    Ensemble => "ensemble" | "dgf+gat",
});

/// Training objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossKind {
    /// Pairwise hinge ranking loss (TA-GATES; the paper's choice).
    Hinge,
    /// Mean squared error on standardised log latency.
    Mse,
}

keywords!(LossKind, "loss" { Hinge => "hinge", Mse => "mse" });

/// How the predictor is trained: today's served recipe or the paper's
/// released code's (`correlation_trainer/main_trf.py`), compared in
/// docs/experiments/paper_recipe.md.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Recipe {
    /// Constant-rate AdamW, 16 graphs of one device per step, standardised
    /// log latency, every ordered pair ranked, last-epoch readout (what
    /// `serve` and `eval` use by default).
    #[default]
    Served,
    /// The paper's code: cosine decay to 1e-6, 128 graphs mixed across
    /// source devices per pretraining step with per-device min-max
    /// latencies and 4n random pairs, one architecture set for all
    /// sources, 150 epochs, readout averaged over the last 4 transfer
    /// epochs, supplementary input through a [128, 128] embedder.
    Paper,
}

keywords!(Recipe, "recipe" { Served => "served", Paper => "paper" });

impl Recipe {
    /// Whether this is the served (default) recipe; the served recipe is
    /// left out of serialised settings so existing cache keys stay valid.
    pub fn is_served(&self) -> bool {
        *self == Recipe::Served
    }
}

/// Which node states feed the head (the graph-level readout).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Readout {
    /// The output node's state alone. It has seen only the nodes within
    /// `ophw_gnn.len() + gnn.len()` hops upstream (5 by default): all of an
    /// NB201 cell, but only the last 5 layers of FBNet's 22-layer chain.
    #[default]
    Output,
    /// The mean of every node's state but the input's, output node
    /// included: the paper's code (`_final_process` in
    /// `correlation_trainer/models_abl_p2.py`; its none-op mask is a
    /// placeholder index that matches no op, so nothing is masked).
    Mean,
}

keywords!(Readout, "readout" { Output => "output", Mean => "mean" });

impl Readout {
    /// Whether this is the served default (left out of serialised settings
    /// so existing checkpoints and cache keys stay valid).
    pub fn is_output(&self) -> bool {
        *self == Readout::Output
    }

    /// The node positions the readout averages in a graph of `nodes` nodes
    /// (node 0 is the input, the last the output): one contiguous range,
    /// read by the dense forward and the memoised pass alike.
    pub fn positions(self, nodes: usize) -> std::ops::Range<usize> {
        match self {
            Readout::Output => nodes.saturating_sub(1)..nodes,
            Readout::Mean => 1.min(nodes)..nodes,
        }
    }
}

/// Which computation the network performs: the one the paper's text
/// describes (Fig. 3, Eqs. 1-3, Appendix A.4.5) or the one its released
/// code computes (`GIN_Model` in `correlation_trainer/models_abl_p2.py`).
/// The two differ in ways the text does not mention; see
/// docs/experiments/paper_recipe.md, "The network the code computes".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkForm {
    /// Per-position node embeddings; the op-HW GNN reads op and hardware
    /// and gives every node its own refined op embedding; DGF and GAT run
    /// as two stacks whose readouts are concatenated; attention only over a
    /// node's predecessors and itself; FBNet layers form a chain.
    #[default]
    Text,
    /// The code's network: one shared embedding for every node but the
    /// input, widened to [`CODE_HIDDEN`]; op and hardware embeddings gate
    /// the GNNs rather than feed them; the op GNN's *output node* state,
    /// through an MLP, is appended to every node's gate; each layer is the
    /// mean of a DGF and a GAT layer (ReLU between layers); attention spans
    /// every node of the graph (a non-neighbour's logit is 0, not masked,
    /// and is scaled by the node count); FBNet graphs have no edges.
    Code,
}

keywords!(NetworkForm, "network" { Text => "text", Code => "code" });

impl NetworkForm {
    /// Whether this is the served default (left out of serialised settings
    /// so existing checkpoints and cache keys stay valid).
    pub fn is_text(&self) -> bool {
        *self == NetworkForm::Text
    }
}

/// Width the code's network maps node embeddings to before its GNNs
/// (`hid_dim = 96`, the `x_hidden` layer).
pub const CODE_HIDDEN: usize = 96;

/// Hidden widths of the MLP that carries the code's op-GNN output-node
/// state to every node (`replace_bgcn_mlp_dims` [128, 128, 128]: two
/// hidden layers, then 128 out, [`CODE_BROADCAST_OUT`]).
pub const CODE_BROADCAST_HIDDEN: [usize; 2] = [128, 128];

/// Output width of that MLP.
pub const CODE_BROADCAST_OUT: usize = 128;

/// Hardware-embedding width in the paper's code (`hw_embedding_dim = 8`,
/// `correlation_trainer/models_abl_p2.py`, never overridden by
/// `main_trf.py`); Table 20's "Hidden Dim 96" is the served width.
pub const PAPER_HW_DIM: usize = 8;

/// Op-embedding width in the paper's code with per-node hardware
/// embeddings: 48 - 8, so that op and hardware together are 48 wide.
pub const PAPER_OP_DIM: usize = 40;

/// Hidden widths of the paper's supplementary-encoding embedder
/// (`zcp_embedder_dims` in the paper's code).
pub const PAPER_SUPPLEMENTARY_HIDDEN: [usize; 2] = [128, 128];

/// Output width of that embedder (`zcp_embedding_dim` in the paper's code).
pub const PAPER_SUPPLEMENTARY_OUT: usize = 48;

/// Shape of the network (paper Table 20 and Appendix A.4.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictorConfig {
    /// Op embedding width (48).
    pub op_dim: usize,
    /// Learnable per-position node embedding width, the initial `X^0` (48).
    pub node_dim: usize,
    /// Hardware embedding width; Table 20's "Hidden Dim" (96).
    pub hw_dim: usize,
    /// Op-HW GNN widths ([128, 128]).
    pub ophw_gnn: Vec<usize>,
    /// Op-HW MLP hidden widths ([128]); its output has `op_dim` units.
    pub ophw_mlp: Vec<usize>,
    /// Main GNN widths ([128, 128, 128]).
    pub gnn: Vec<usize>,
    /// Head MLP hidden widths ([200, 200, 200]).
    pub head: Vec<usize>,
    /// DGF, GAT or both.
    pub gnn_kind: GnnKind,
    /// Operation-wise hardware embedding on (paper Section 5.1).
    pub ophw: bool,
    /// Supplementary encoding concatenated to the readout.
    pub supplementary: Supplementary,
    /// Feed analytic per-node cost features next to the op embeddings.
    pub node_costs: bool,
    /// Pass the supplementary encoding through an MLP (`[hidden...]` then
    /// [`PAPER_SUPPLEMENTARY_OUT`] units) before the head, as the paper's
    /// code does; empty: the raw encoding goes to the head. Left out of
    /// serialised settings when empty, so older checkpoints still load.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supplementary_embedder: Vec<usize>,
    /// Which node states feed the head; left out of serialised settings
    /// when it is the served default.
    #[serde(default, skip_serializing_if = "Readout::is_output")]
    pub readout: Readout,
    /// The paper text's network or its code's; left out of serialised
    /// settings when it is the served default.
    #[serde(default, skip_serializing_if = "NetworkForm::is_text")]
    pub network: NetworkForm,
}

impl PredictorConfig {
    /// The paper's inputs for [`Recipe::Paper`]: operations only (no
    /// per-node costs), the supplementary embedder, the mean readout, the
    /// code's embedding widths and the code's network; the served
    /// defaults otherwise.
    pub fn for_recipe(recipe: Recipe) -> Self {
        match recipe {
            Recipe::Served => PredictorConfig::default(),
            Recipe::Paper => PredictorConfig {
                node_costs: false,
                supplementary_embedder: PAPER_SUPPLEMENTARY_HIDDEN.to_vec(),
                readout: Readout::Mean,
                hw_dim: PAPER_HW_DIM,
                op_dim: PAPER_OP_DIM,
                network: NetworkForm::Code,
                ..PredictorConfig::default()
            },
        }
    }
}

impl Default for PredictorConfig {
    fn default() -> Self {
        PredictorConfig {
            op_dim: 48,
            node_dim: 48,
            hw_dim: 96,
            ophw_gnn: vec![128, 128],
            ophw_mlp: vec![128],
            gnn: vec![128, 128, 128],
            head: vec![200, 200, 200],
            gnn_kind: GnnKind::Ensemble,
            ophw: true,
            supplementary: Supplementary::Cost,
            node_costs: true,
            supplementary_embedder: Vec::new(),
            readout: Readout::Output,
            network: NetworkForm::Text,
        }
    }
}

/// Optimisation settings for pretraining and transfer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Pretraining learning rate (1e-3).
    pub lr: f64,
    /// AdamW weight decay (1e-5).
    pub weight_decay: f64,
    /// Pretraining epochs (150 in the paper).
    pub epochs: usize,
    /// Batch size (16).
    pub batch_size: usize,
    /// Transfer epochs (40 NB201 / 30 FBNet).
    pub transfer_epochs: usize,
    /// Transfer learning rate (3e-3 NB201 / 1e-3 FBNet).
    pub transfer_lr: f64,
    /// Source samples per device.
    pub source_samples: usize,
    /// Ranking or regression loss.
    pub loss: LossKind,
    /// Hinge margin.
    pub margin: f64,
    /// Initialise the target's hardware embedding from the best-correlated
    /// source device (paper Section 5.2); otherwise from the mean row.
    pub hw_init: bool,
    /// Served or paper recipe; part of every checkpoint cache key that
    /// hashes this struct (absent from the JSON when served, so served
    /// keys are unchanged).
    #[serde(default, skip_serializing_if = "Recipe::is_served")]
    pub recipe: Recipe,
}

impl TrainConfig {
    /// Table 20 settings of a space, except pretraining length: the paper's
    /// 150 epochs over 25 (NB201) / 800 (FBNet) samples per source device
    /// take hours on 2 CPU cores, so the defaults are 60 epochs x 25 samples
    /// (NB201) and 20 epochs x 100 samples (FBNet): more NB201 source samples
    /// do not help, and on FBNet more help the GNN alone but not the served
    /// blend (docs/experiments/table7.md, "Source samples per device").
    pub fn for_space(space: SearchSpace) -> Self {
        let (transfer_epochs, transfer_lr, source_samples, epochs) = match space {
            SearchSpace::Nb201 => (40, 3e-3, 25, 60),
            SearchSpace::Fbnet => (30, 1e-3, 100, 20),
        };
        TrainConfig {
            lr: 1e-3,
            weight_decay: 1e-5,
            epochs,
            batch_size: 16,
            transfer_epochs,
            transfer_lr,
            source_samples,
            loss: LossKind::Hinge,
            margin: 0.1,
            hw_init: true,
            recipe: Recipe::Served,
        }
    }

    /// The settings of `recipe` on `space`. [`Recipe::Paper`]: Table 20's
    /// 150 pretraining epochs, Table 7's source samples (25 NB201, 800
    /// FBNet), the transfer settings of Table 20 (batch 16 in transfer;
    /// pretraining batches are [`crate::recipe::PAPER_PRETRAIN_BATCH`]).
    pub fn for_recipe(space: SearchSpace, recipe: Recipe) -> Self {
        let served = TrainConfig::for_space(space);
        match recipe {
            Recipe::Served => served,
            Recipe::Paper => TrainConfig {
                epochs: 150,
                source_samples: match space {
                    SearchSpace::Nb201 => 25,
                    SearchSpace::Fbnet => 800,
                },
                recipe,
                ..served
            },
        }
    }

    /// Rejects values that cannot train.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size < 2 {
            return Err(PredictorError::input(
                "batch size",
                "at least 2 (a pairwise loss)",
                self.batch_size.to_string(),
            ));
        }
        if !(self.lr > 0.0 && self.transfer_lr > 0.0) {
            return Err(PredictorError::input(
                "learning rate",
                "positive rates",
                format!("lr {}, transfer lr {}", self.lr, self.transfer_lr),
            ));
        }
        if self.recipe == Recipe::Paper && self.loss != LossKind::Hinge {
            return Err(PredictorError::input(
                "loss",
                "hinge with --recipe paper (the paper ranks pairs)",
                "mse",
            ));
        }
        if self.source_samples == 0 {
            return Err(PredictorError::input(
                "source samples",
                "a positive count",
                "0",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_paper_recipe_takes_the_codes_readout_and_widths() {
        let paper = PredictorConfig::for_recipe(Recipe::Paper);
        assert_eq!(paper.readout, Readout::Mean);
        assert_eq!((paper.hw_dim, paper.op_dim), (8, 40));
        assert!(!paper.node_costs);
        assert_eq!(paper.network, NetworkForm::Code);
        let served = PredictorConfig::for_recipe(Recipe::Served);
        assert_eq!(served, PredictorConfig::default());
        assert_eq!(served.readout, Readout::Output);
        assert_eq!(served.network, NetworkForm::Text);
    }

    #[test]
    fn the_served_readout_stays_out_of_cache_keys() {
        // Checkpoints cached before the readout existed keep their keys.
        let served = serde_json::to_string(&PredictorConfig::default()).unwrap();
        assert!(!served.contains("readout"), "{served}");
        let paper = serde_json::to_string(&PredictorConfig::for_recipe(Recipe::Paper)).unwrap();
        assert!(paper.contains(r#""readout":"mean""#), "{paper}");
        let back: PredictorConfig = serde_json::from_str(&served).unwrap();
        assert_eq!(back.readout, Readout::Output);
        assert_eq!(Readout::Mean.positions(4), 1..4);
        assert_eq!(Readout::Output.positions(4), 3..4);
        assert!("sum".parse::<Readout>().is_err());
    }
}
