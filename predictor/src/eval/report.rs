//! Markdown and JSON renderings of evaluation runs.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::RunReport;
use super::reference::reference;
use crate::error::{PredictorError, Result};

/// A markdown table: our numbers beside the paper's and the best trivial baseline.
pub fn markdown(runs: &[RunReport]) -> String {
    let mut out = String::new();
    out.push_str(
        "| space | task | method | spearman | kendall | within10 | MAPE | paper NASFLAT | HELP | MultiPredict | best trivial | bar | beats bar |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for run in runs {
        let r = reference(&run.task);
        let cell =
            |f: &dyn Fn(&super::reference::Reference) -> String| r.map_or("-".to_string(), f);
        let beats = r.map_or("-".to_string(), |r| {
            if run.spearman_mean > r.target() {
                "yes".into()
            } else {
                "no".into()
            }
        });
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.3} ± {:.3} | {:.3} | {:.1}% | {:.1}% | {} | {} | {} | {} | {} | {} |",
            run.space,
            run.task,
            run.method,
            run.spearman_mean,
            run.spearman_std,
            run.kendall_mean,
            100.0 * run.within10_mean,
            100.0 * run.mape_mean,
            cell(&|r| format!("{:.3} ± {:.3}", r.nasflat, r.nasflat_std)),
            cell(&|r| format!("{:.3}", r.help)),
            cell(&|r| format!("{:.3}", r.multipredict)),
            cell(&|r| format!("{:.3} ({})", r.trivial, r.trivial_name)),
            cell(&|r| format!("{:.3}", r.target())),
            beats,
        );
    }
    out
}

/// A timing summary: pretraining, transfer and prediction seconds per run.
pub fn timings(runs: &[RunReport]) -> String {
    let mut out = String::new();
    out.push_str("| space | task | method | total s | pretrain s (mean) | fit/target s | predict/target s | archs/target |\n");
    out.push_str("|---|---|---|---|---|---|---|---|\n");
    for run in runs {
        let pre = if run.pretrain_seconds.is_empty() {
            "-".to_string()
        } else {
            format!(
                "{:.2}",
                run.pretrain_seconds.iter().sum::<f64>() / run.pretrain_seconds.len() as f64
            )
        };
        let archs =
            run.outcomes.iter().map(|o| o.evaluated).sum::<usize>() / run.outcomes.len().max(1);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} | {} | {:.3} | {:.3} | {} |",
            run.space,
            run.task,
            run.method,
            run.seconds,
            pre,
            run.fit_seconds_mean,
            run.predict_seconds_mean,
            archs
        );
    }
    out
}

#[derive(Serialize)]
struct JsonRuns<'a> {
    runs: &'a [RunReport],
}

/// Writes `{"runs": [...]}`.
pub fn write_json(runs: &[RunReport], path: &Path) -> Result<()> {
    let text = serde_json::to_string_pretty(&JsonRuns { runs }).map_err(|source| {
        PredictorError::Json {
            what: path.display().to_string(),
            source,
        }
    })?;
    std::fs::write(path, text).map_err(|source| PredictorError::Io {
        path: path.display().to_string(),
        source,
    })
}
