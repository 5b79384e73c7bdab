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
    let e = &sample.timing.estimate;
    let _ = writeln!(
        out,
        "label        {:.4} ms   ({}; {} rounds, {})",
        e.label_ms(),
        match e.clock {
            crate::label::LabelClock::ThreadCpu => "thread CPU time",
            crate::label::LabelClock::Wall => "wall time",
        },
        e.rounds.len(),
        if e.settled() {
            "settled".to_string()
        } else {
            format!(
                "NOT settled: drift {:.1}%, {:.0}% of rounds agree",
                e.verdict.drift * 100.0,
                e.verdict.agreement * 100.0
            )
        }
    );
    let d = &sample.timing.disturbance;
    let _ = writeln!(
        out,
        "machine load {}{}",
        d.load_before.zip(d.load_after).map_or(
            "load average unknown".to_string(),
            |(b, a)| format!("load average {:.2} -> {:.2}", b[0], a[0])
        ),
        if d.kinds.is_empty() {
            ", undisturbed".to_string()
        } else {
            format!(", DISTURBED: {}", d.describe())
        }
    );
    if !sample.repeated.is_empty() {
        let _ = writeln!(
            out,
            "repeated     {} earlier timing(s): {}",
            sample.repeated.len(),
            sample
                .repeated
                .iter()
                .map(|a| format!("{:.4} ms", a.label_ms))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = writeln!(out, "median       {:.4} ms   (wall clock)", s.median_ms);
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
