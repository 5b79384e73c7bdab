//! Human-readable rendering of a sample (the JSON form is serde's).

use std::fmt::Write;

use crate::measure::Sample;

/// A short table for terminals.
pub fn table(sample: &Sample) -> String {
    let s = &sample.timing.summary;
    let m = &sample.provenance.machine;
    let mut out = String::new();
    let _ = writeln!(out, "model        {}", sample.model);
    let _ = writeln!(
        out,
        "machine      {} ({} cores, {}, tract {})",
        m.cpu_model.as_deref().unwrap_or("unknown CPU"),
        m.cores,
        m.target,
        m.tract_version
    );
    if let Some(r) = &sample.provenance.runtime {
        let _ = writeln!(
            out,
            "runtime      {} {}{}",
            r.kind,
            r.version,
            r.library
                .as_ref()
                .map_or_else(String::new, |l| format!(" ({l})"))
        );
    }
    let _ = writeln!(
        out,
        "settings     threads {}, pinned {}, batch {}",
        sample.provenance.settings.threads,
        sample
            .provenance
            .settings
            .pinned_core
            .map_or("no".to_string(), |c| format!("core {c}")),
        sample
            .provenance
            .settings
            .batch_size
            .map_or("?".to_string(), |b| b.to_string())
    );
    let _ = writeln!(
        out,
        "load         {:.2} ms   optimize {:.2} ms   first inference {:.3} ms",
        sample.load_ms, sample.optimize_ms, sample.timing.first_inference_ms
    );
    let _ = writeln!(
        out,
        "runs         {} timed after {} warm-up",
        s.runs, sample.timing.warmup_runs
    );
    let _ = writeln!(out, "median       {:.4} ms   (the label)", s.median_ms);
    let _ = writeln!(
        out,
        "min/mean/max {:.4} / {:.4} / {:.4} ms   std {:.4} ms   CV {:.2}%",
        s.min_ms,
        s.mean_ms,
        s.max_ms,
        s.std_ms,
        s.cv * 100.0
    );
    let _ = writeln!(out, "p90/p99      {:.4} / {:.4} ms", s.p90_ms, s.p99_ms);
    let _ = writeln!(out, "outputs      {:?}", sample.timing.output_shapes);
    if sample.valid {
        let _ = writeln!(out, "valid        yes");
    } else {
        let _ = writeln!(
            out,
            "valid        NO: {}",
            sample.invalid_reasons.join("; ")
        );
    }
    out
}
