//! Published figures our runs are compared against: paper Table 7 (HELP,
//! MultiPredict, NASFLAT; Spearman, 20 target samples) and the best trivial
//! baseline of BASELINES.md (same protocol, 5 trials).

/// Reference numbers of one task.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reference {
    /// Task name.
    pub task: &'static str,
    /// HELP (Table 7).
    pub help: f64,
    /// MultiPredict (Table 7).
    pub multipredict: f64,
    /// NASFLAT mean (Table 7).
    pub nasflat: f64,
    /// NASFLAT standard deviation (Table 7).
    pub nasflat_std: f64,
    /// Best trivial baseline (BASELINES.md).
    pub trivial: f64,
    /// Which trivial baseline that is.
    pub trivial_name: &'static str,
}

impl Reference {
    /// The bar to beat: the better of the paper and the best trivial baseline.
    pub fn target(&self) -> f64 {
        self.nasflat.max(self.trivial)
    }
}

/// All 12 tasks.
pub const REFERENCES: [Reference; 12] = [
    r("ND", 0.948, 0.930, 0.959, 0.007, 0.962, "ridge"),
    r("N1", 0.604, 0.907, 0.967, 0.007, 0.798, "flops"),
    r("N2", 0.509, 0.757, 0.857, 0.029, 0.563, "flops"),
    r("N3", 0.729, 0.947, 0.962, 0.008, 0.798, "flops"),
    r("N4", 0.746, 0.952, 0.959, 0.012, 0.836, "ridge"),
    r("NA", 0.410, 0.820, 0.893, 0.036, 0.484, "ridge"),
    r("FD", 0.910, 0.960, 0.961, 0.007, 0.960, "flops"),
    r("F1", 0.793, 0.756, 0.809, 0.019, 0.890, "flops"),
    r("F2", 0.543, 0.567, 0.871, 0.024, 0.680, "ridge"),
    r("F3", 0.413, 0.434, 0.814, 0.046, 0.356, "nearest"),
    r("F4", 0.799, 0.763, 0.734, 0.142, 0.780, "ridge"),
    r("FA", 0.37, 0.45, 0.577, 0.079, 0.752, "flops"),
];

const fn r(
    task: &'static str,
    help: f64,
    multipredict: f64,
    nasflat: f64,
    nasflat_std: f64,
    trivial: f64,
    trivial_name: &'static str,
) -> Reference {
    Reference {
        task,
        help,
        multipredict,
        nasflat,
        nasflat_std,
        trivial,
        trivial_name,
    }
}

/// Reference of a task by name.
pub fn reference(task: &str) -> Option<&'static Reference> {
    REFERENCES.iter().find(|r| r.task == task)
}
