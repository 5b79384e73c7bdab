//! Where and how a sample was measured.
//!
//! "Measured != predicted" reports are almost always a board that was
//! throttling, on a power-saving governor, or running another thread count
//! than the one its table was made with. So every sample carries the machine
//! and its state before and after, and a sample during which the governor,
//! the frequency caps or the throttle state changed is flagged invalid.

use std::fs;
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

/// Frequency and governor of one core (sysfs `cpufreq`, when present).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreState {
    /// Core number.
    pub cpu: usize,
    /// `scaling_governor`.
    pub governor: Option<String>,
    /// `scaling_cur_freq`, kHz.
    pub cur_khz: Option<u64>,
    /// `scaling_min_freq`, kHz.
    pub min_khz: Option<u64>,
    /// `scaling_max_freq`, kHz.
    pub max_khz: Option<u64>,
}

/// The part of the machine's state that can change during a measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DynamicState {
    /// Per-core frequency state.
    pub cores: Vec<CoreState>,
    /// Thermal zone temperatures, degrees Celsius.
    pub temperatures_c: Vec<f64>,
    /// `vcgencmd get_throttled` output on a Raspberry Pi.
    pub throttled: Option<String>,
}

impl DynamicState {
    /// Reads the current state.
    pub fn read() -> DynamicState {
        DynamicState::read_from(Path::new("/sys"))
    }

    /// Reads from a sysfs root (tests point this at a fake tree).
    pub fn read_from(sys: &Path) -> DynamicState {
        let cpu_dir = sys.join("devices/system/cpu");
        let mut cores = Vec::new();
        if let Ok(entries) = fs::read_dir(&cpu_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                let Some(cpu) = name.strip_prefix("cpu").and_then(|n| n.parse().ok()) else {
                    continue;
                };
                let freq = entry.path().join("cpufreq");
                cores.push(CoreState {
                    cpu,
                    governor: read_trimmed(&freq.join("scaling_governor")),
                    cur_khz: read_u64(&freq.join("scaling_cur_freq")),
                    min_khz: read_u64(&freq.join("scaling_min_freq")),
                    max_khz: read_u64(&freq.join("scaling_max_freq")),
                });
            }
        }
        cores.sort_by_key(|c| c.cpu);
        let mut temperatures_c = Vec::new();
        if let Ok(entries) = fs::read_dir(sys.join("class/thermal")) {
            let mut zones: Vec<_> = entries.flatten().map(|e| e.path()).collect();
            zones.sort();
            for zone in zones {
                if let Some(milli) = read_u64(&zone.join("temp")) {
                    temperatures_c.push(milli as f64 / 1000.0);
                }
            }
        }
        DynamicState {
            cores,
            temperatures_c,
            throttled: vcgencmd_throttled(),
        }
    }

    /// Why a measurement between `self` (before) and `after` is not
    /// trustworthy, if it is not: governor, frequency caps or throttle state
    /// changed. Current frequency alone may move with load and is not a reason.
    pub fn instability(&self, after: &DynamicState) -> Option<String> {
        let mut reasons = Vec::new();
        for (b, a) in self.cores.iter().zip(&after.cores) {
            if b.governor != a.governor {
                reasons.push(format!(
                    "cpu{} governor {:?} -> {:?}",
                    b.cpu, b.governor, a.governor
                ));
            }
            if b.min_khz != a.min_khz || b.max_khz != a.max_khz {
                reasons.push(format!(
                    "cpu{} frequency caps {:?}-{:?} -> {:?}-{:?} kHz",
                    b.cpu, b.min_khz, b.max_khz, a.min_khz, a.max_khz
                ));
            }
        }
        if self.cores.len() != after.cores.len() {
            reasons.push("online core count changed".into());
        }
        if self.throttled != after.throttled {
            reasons.push(format!(
                "throttle state {:?} -> {:?}",
                self.throttled, after.throttled
            ));
        }
        if reasons.is_empty() {
            None
        } else {
            Some(reasons.join("; "))
        }
    }
}

/// The fixed facts about the machine and the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineInfo {
    /// CPU model name (`/proc/cpuinfo`).
    pub cpu_model: Option<String>,
    /// Logical cores available.
    pub cores: usize,
    /// Target triple the agent was built for.
    pub target: String,
    /// Kernel release.
    pub kernel: Option<String>,
    /// Total memory, kB.
    pub mem_total_kb: Option<u64>,
    /// tract version.
    pub tract_version: String,
    /// Agent version.
    pub agent_version: String,
    /// Host name.
    pub hostname: Option<String>,
    /// `TRACT_*` environment variables in effect (tract reads its tuning
    /// knobs, e.g. `TRACT_AVGPOOL_SEPARABLE`, from the environment; they
    /// change kernels and therefore latencies, so a sample must say which
    /// were set).
    #[serde(default)]
    pub tract_knobs: std::collections::BTreeMap<String, String>,
}

impl MachineInfo {
    /// Reads the machine's facts.
    pub fn read() -> MachineInfo {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| {
                l.starts_with("model name") || l.starts_with("Model") || l.starts_with("Hardware")
            })
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string());
        let mem_total_kb = fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        });
        MachineInfo {
            cpu_model,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            target: env!("NASFLAT_TARGET").to_string(),
            kernel: read_trimmed(Path::new("/proc/sys/kernel/osrelease")),
            mem_total_kb,
            tract_version: env!("NASFLAT_TRACT_VERSION").to_string(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            hostname: read_trimmed(Path::new("/proc/sys/kernel/hostname")),
            tract_knobs: tract_knobs(std::env::vars_os()),
        }
    }
}

/// How the measurement was run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSettings {
    /// tract worker threads (1 = single-threaded).
    pub threads: usize,
    /// Core the measuring thread was pinned to, if any.
    pub pinned_core: Option<usize>,
    /// Batch size of the model's first input, if known.
    pub batch_size: Option<usize>,
}

/// Everything recorded with one sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// Machine facts.
    pub machine: MachineInfo,
    /// Run settings.
    pub settings: RunSettings,
    /// The runtime, its version, library and thread / optimisation
    /// settings. `None` in samples of agents from before this field (they
    /// ran tract, `machine.tract_version`).
    #[serde(default)]
    pub runtime: Option<crate::runtime::RuntimeInfo>,
    /// State read just before the measurement.
    pub before: DynamicState,
    /// State read just after.
    pub after: DynamicState,
}

/// The `TRACT_*` variables among `vars` (non-UTF-8 ones are skipped).
fn tract_knobs(
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> std::collections::BTreeMap<String, String> {
    vars.filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with("TRACT_"))
        .collect()
}

fn read_trimmed(path: &Path) -> Option<String> {
    fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn read_u64(path: &Path) -> Option<u64> {
    read_trimmed(path).and_then(|s| s.parse().ok())
}

fn vcgencmd_throttled() -> Option<String> {
    let output = Command::new("vcgencmd")
        .arg("get_throttled")
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tract_variables_are_recorded_as_knobs() {
        let vars = [
            ("TRACT_AVGPOOL_SEPARABLE", "1"),
            ("PATH", "/bin"),
            ("TRACT_DISABLE_BLOCKED_CONV", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()));
        let knobs = tract_knobs(vars);
        assert_eq!(knobs.len(), 2);
        assert_eq!(knobs["TRACT_AVGPOOL_SEPARABLE"], "1");
        assert!(!knobs.contains_key("PATH"));
    }

    fn fake_sys(dir: &Path, governor: &str, max: u64) {
        for cpu in 0..2 {
            let f = dir.join(format!("devices/system/cpu/cpu{cpu}/cpufreq"));
            fs::create_dir_all(&f).unwrap();
            fs::write(f.join("scaling_governor"), format!("{governor}\n")).unwrap();
            fs::write(f.join("scaling_cur_freq"), "1500000\n").unwrap();
            fs::write(f.join("scaling_min_freq"), "600000\n").unwrap();
            fs::write(f.join("scaling_max_freq"), format!("{max}\n")).unwrap();
        }
        let z = dir.join("class/thermal/thermal_zone0");
        fs::create_dir_all(&z).unwrap();
        fs::write(z.join("temp"), "48500\n").unwrap();
    }

    #[test]
    fn reads_fake_sysfs_and_flags_changes() {
        let a = tempfile::tempdir().unwrap();
        fake_sys(a.path(), "performance", 1_800_000);
        let before = DynamicState::read_from(a.path());
        assert_eq!(before.cores.len(), 2);
        assert_eq!(before.cores[1].governor.as_deref(), Some("performance"));
        assert_eq!(before.cores[0].max_khz, Some(1_800_000));
        assert_eq!(before.temperatures_c, vec![48.5]);
        assert!(before.instability(&before).is_none());

        let b = tempfile::tempdir().unwrap();
        fake_sys(b.path(), "powersave", 1_200_000);
        let after = DynamicState::read_from(b.path());
        let why = before.instability(&after).unwrap();
        assert!(
            why.contains("governor") && why.contains("frequency caps"),
            "{why}"
        );
    }

    #[test]
    fn machine_info_has_target_and_versions() {
        let m = MachineInfo::read();
        assert!(m.target.contains("linux"), "{}", m.target);
        assert!(m.tract_version.starts_with("0."), "{}", m.tract_version);
        assert!(m.cores >= 1);
    }
}
