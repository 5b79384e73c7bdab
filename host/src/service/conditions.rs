//! What an agent's sample says about the machine it was measured on: did
//! its label settle, was the machine disturbed, how loaded was it.
//!
//! The wire result carries only the label and the validity verdict; the
//! agent puts everything else in the sample's JSON (`sample_json`), which
//! old agents wrote without these fields. So every field here is optional,
//! and a missing one means "not reported", never "bad".

use serde::{Deserialize, Serialize};

/// The measuring conditions of one sample, as far as its agent reported them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SampleConditions {
    /// Whether the label settled (`timing.estimate.verdict.settled`).
    pub settled: Option<bool>,
    /// The disturbances the agent found (`timing.disturbance.kinds`), e.g.
    /// `preempted`, `loaded`, `cpu_steal`, `canary_changed`.
    pub disturbances: Vec<String>,
    /// The higher 1-minute load average of before and after timing.
    pub load: Option<f64>,
    /// Fraction of the timed wall time the measuring thread was off the CPU.
    pub preempted_fraction: Option<f64>,
    /// Logical cores of the machine (`provenance.machine.cores`).
    pub cores: Option<u64>,
    /// Timings the agent repeated before this one (`repeated`).
    pub repeated: usize,
}

impl SampleConditions {
    /// Reads the conditions from a sample's JSON.
    pub fn of(sample: &serde_json::Value) -> SampleConditions {
        let timing = &sample["timing"];
        let disturbance = &timing["disturbance"];
        let load = ["load_before", "load_after"]
            .iter()
            .filter_map(|k| disturbance[*k][0].as_f64())
            .reduce(f64::max);
        SampleConditions {
            settled: timing["estimate"]["verdict"]["settled"].as_bool(),
            disturbances: disturbance["kinds"]
                .as_array()
                .map(|kinds| {
                    kinds
                        .iter()
                        .filter_map(|k| k.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            load,
            preempted_fraction: disturbance["preempted_fraction"].as_f64(),
            cores: sample["provenance"]["machine"]["cores"].as_u64(),
            repeated: sample["repeated"].as_array().map_or(0, Vec::len),
        }
    }

    /// Reads the conditions from a sample's JSON text (unparsable text
    /// reports nothing).
    pub fn of_text(text: &str) -> SampleConditions {
        serde_json::from_str::<serde_json::Value>(text)
            .map(|v| SampleConditions::of(&v))
            .unwrap_or_default()
    }

    /// Whether the agent found the machine disturbed.
    pub fn disturbed(&self) -> bool {
        !self.disturbances.is_empty()
    }
}

/// The conditions of many samples, counted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConditionsTally {
    /// Samples counted.
    pub samples: usize,
    /// Samples whose label did not settle.
    pub unsettled: usize,
    /// Samples on a disturbed machine.
    pub disturbed: usize,
    /// Samples the agent had to time more than once.
    pub repeated: usize,
    /// Samples that reported nothing about their conditions (old agents).
    pub unreported: usize,
    /// Highest 1-minute load average seen.
    pub max_load: Option<f64>,
    /// Largest fraction of a timing spent off the CPU.
    pub max_preempted: Option<f64>,
    /// Cores of the machine, when reported.
    pub cores: Option<u64>,
}

impl ConditionsTally {
    /// Counts `conditions`.
    pub fn of<'a>(conditions: impl IntoIterator<Item = &'a SampleConditions>) -> ConditionsTally {
        let mut t = ConditionsTally::default();
        for c in conditions {
            t.samples += 1;
            t.unsettled += usize::from(c.settled == Some(false));
            t.disturbed += usize::from(c.disturbed());
            t.repeated += usize::from(c.repeated > 0);
            t.unreported += usize::from(c.settled.is_none());
            t.max_load = max_option(t.max_load, c.load);
            t.max_preempted = max_option(t.max_preempted, c.preempted_fraction);
            t.cores = t.cores.or(c.cores);
        }
        t
    }

    /// A warning that the numbers were taken on a busy machine, or `None`
    /// when every sample reported an undisturbed, settled timing.
    pub fn busy_warning(&self) -> Option<String> {
        if self.disturbed == 0 && self.unsettled == 0 {
            return None;
        }
        let mut text = format!(
            "measuring conditions: WARNING, this machine was busy while measuring: {} of {} samples disturbed, {} did not settle, {} timed more than once",
            self.disturbed, self.samples, self.unsettled, self.repeated
        );
        if let Some(load) = self.max_load {
            text.push_str(&format!("; load average up to {load:.2}"));
            if let Some(cores) = self.cores {
                text.push_str(&format!(" on {cores} cores"));
            }
        }
        if let Some(p) = self.max_preempted {
            text.push_str(&format!(
                "; the agent was off the CPU up to {:.0}% of a timing",
                p * 100.0
            ));
        }
        text.push_str(
            ". Samples that did not settle were measured again and not used for the transfer; \
             rerun on an idle machine for numbers you can compare.",
        );
        Some(text)
    }
}

impl ConditionsTally {
    /// One line on the measuring conditions: the busy-machine warning, or
    /// that the samples were taken undisturbed (with the load seen).
    pub fn summary_line(&self) -> String {
        if let Some(warning) = self.busy_warning() {
            return warning;
        }
        let mut text = format!(
            "measuring conditions: {} samples, none disturbed, every label settled",
            self.samples - self.unreported
        );
        if let Some(load) = self.max_load {
            text.push_str(&format!(" (load average up to {load:.2})"));
        }
        if self.unreported > 0 {
            text.push_str(&format!(
                "; {} samples from an agent that does not report its conditions",
                self.unreported
            ));
        }
        text
    }
}

fn max_option(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample(settled: bool, kinds: &[&str], load: f64) -> serde_json::Value {
        json!({
            "timing": {
                "estimate": {"verdict": {"settled": settled, "label_ms": 2.0}},
                "disturbance": {
                    "kinds": kinds,
                    "load_before": [load, 1.0, 1.0],
                    "load_after": [load / 2.0, 1.0, 1.0],
                    "preempted_fraction": 0.3
                }
            },
            "repeated": [{"label_ms": 2.5}],
            "provenance": {"machine": {"cores": 2}}
        })
    }

    #[test]
    fn reads_what_the_agent_reported() {
        let c = SampleConditions::of(&sample(false, &["preempted", "loaded"], 3.5));
        assert_eq!(c.settled, Some(false));
        assert_eq!(c.disturbances, vec!["preempted", "loaded"]);
        assert_eq!(c.load, Some(3.5));
        assert_eq!(c.cores, Some(2));
        assert_eq!(c.repeated, 1);
        assert!(c.disturbed());
    }

    #[test]
    fn an_old_agent_reports_nothing_and_is_not_flagged() {
        let c = SampleConditions::of_text(r#"{"timing": {"summary": {"median_ms": 2.0}}}"#);
        assert_eq!(c, SampleConditions::default());
        let t = ConditionsTally::of([&c, &c]);
        assert_eq!(t.unreported, 2);
        assert_eq!(t.busy_warning(), None);
        assert_eq!(
            SampleConditions::of_text("not json"),
            SampleConditions::default()
        );
    }

    #[test]
    fn a_busy_machine_is_reported_with_counts_and_load() {
        let quiet = SampleConditions::of(&sample(true, &[], 0.4));
        let busy = SampleConditions::of(&sample(true, &["preempted"], 3.2));
        let unsettled = SampleConditions::of(&sample(false, &["canary_changed"], 2.5));
        assert_eq!(ConditionsTally::of([&quiet, &quiet]).busy_warning(), None);
        let line = ConditionsTally::of([&quiet, &quiet]).summary_line();
        assert!(line.contains("2 samples, none disturbed"), "{line}");
        let t = ConditionsTally::of([&quiet, &busy, &unsettled]);
        assert_eq!((t.samples, t.disturbed, t.unsettled), (3, 2, 1));
        let text = t.busy_warning().unwrap();
        assert!(text.contains("2 of 3 samples disturbed"), "{text}");
        assert!(text.contains("1 did not settle"), "{text}");
        assert!(
            text.contains("load average up to 3.20 on 2 cores"),
            "{text}"
        );
        assert_eq!(t.summary_line(), text);
        assert!(text.contains("WARNING"), "{text}");
    }
}
