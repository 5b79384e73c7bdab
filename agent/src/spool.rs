//! The on-disk spool: a result is durable before it is uploaded, and removed
//! only after the host acknowledged it.
//!
//! One file per result, `<key>.result` (postcard). Writing goes to a temp
//! file, `fsync`, rename, `fsync` of the directory: after a power cut a file
//! is either complete or absent, never half-written. A restarted agent finds
//! the files and uploads them; the idempotency key inside makes a re-upload
//! of an already stored result harmless.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use nasflat_shared::protocol::MeasurementResult;
use thiserror::Error;

/// Spool failures. Each names the path involved.
#[derive(Debug, Error)]
pub enum SpoolError {
    /// The directory cannot be created, written or synced.
    #[error("spool {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A spool file is corrupt (it is left in place, renamed `.corrupt`).
    #[error("spool file {path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
}

/// A directory of pending results.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// Opens (creating if needed) a spool directory and checks it is writable.
    pub fn open(dir: &Path) -> Result<Spool, SpoolError> {
        let io = |source| SpoolError::Io {
            path: dir.display().to_string(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        let probe = dir.join(".write-probe");
        File::create(&probe)
            .and_then(|mut f| f.write_all(b"ok").and_then(|()| f.sync_all()))
            .map_err(io)?;
        fs::remove_file(&probe).map_err(io)?;
        Ok(Spool {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.result"))
    }

    /// Durably appends a result. Returns only after the data and the
    /// directory entry are on disk.
    pub fn push(&self, result: &MeasurementResult) -> Result<(), SpoolError> {
        let key = &result.idempotency_key;
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(SpoolError::Corrupt {
                path: key.clone(),
                reason: "idempotency keys must be non-empty [A-Za-z0-9-]".into(),
            });
        }
        let bytes = postcard::to_allocvec(result).map_err(|e| SpoolError::Corrupt {
            path: key.clone(),
            reason: e.to_string(),
        })?;
        let final_path = self.path_of(key);
        let tmp = self.dir.join(format!(".{key}.tmp"));
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| SpoolError::Io { path, source }
        };
        let written = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .and_then(|mut file| {
                file.write_all(&bytes)?;
                file.sync_all()
            });
        if let Err(source) = written {
            // A full disk fails here: drop the partial temp file so the
            // failure leaves the spool exactly as it was.
            let _ = fs::remove_file(&tmp);
            return Err(io(&tmp)(source));
        }
        fs::rename(&tmp, &final_path).map_err(io(&final_path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        Ok(())
    }

    /// All pending results, oldest first. Corrupt files are renamed
    /// `*.corrupt` (kept for inspection) and reported, not fatal.
    pub fn pending(&self) -> Result<(Vec<MeasurementResult>, Vec<SpoolError>), SpoolError> {
        let io = |source| SpoolError::Io {
            path: self.dir.display().to_string(),
            source,
        };
        let mut entries: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) == Some("result") {
                let modified = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                entries.push((modified, path));
            }
        }
        entries.sort();
        let mut results = Vec::new();
        let mut problems = Vec::new();
        for (_, path) in entries {
            let parsed = fs::read(&path).map_err(|e| e.to_string()).and_then(|b| {
                postcard::from_bytes::<MeasurementResult>(&b).map_err(|e| e.to_string())
            });
            match parsed {
                Ok(r) => results.push(r),
                Err(reason) => {
                    let _ = fs::rename(&path, path.with_extension("corrupt"));
                    problems.push(SpoolError::Corrupt {
                        path: path.display().to_string(),
                        reason,
                    });
                }
            }
        }
        Ok((results, problems))
    }

    /// Number of pending results.
    pub fn len(&self) -> Result<usize, SpoolError> {
        Ok(self.pending()?.0.len())
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> Result<bool, SpoolError> {
        Ok(self.len()? == 0)
    }

    /// Removes acknowledged results. A key without a file is ignored (it
    /// was removed by an earlier ack).
    pub fn remove(&self, key: &str) -> Result<(), SpoolError> {
        match fs::remove_file(self.path_of(key)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(SpoolError::Io {
                path: self.path_of(key).display().to_string(),
                source,
            }),
        }
    }
}

/// A fresh 128-bit random idempotency key (hex).
pub fn new_key() -> String {
    let a: u64 = rand::random();
    let b: u64 = rand::random();
    format!("{a:016x}{b:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use nasflat_shared::protocol::JobSpec;
    use nasflat_shared::{Arch, SearchSpace};

    fn result(key: &str) -> MeasurementResult {
        MeasurementResult {
            idempotency_key: key.to_string(),
            device_id: "d1".into(),
            lease_id: Some("l1".into()),
            job: JobSpec::Arch {
                arch: Arch::from_index(SearchSpace::Nb201, 1).unwrap(),
                batch: 1,
                resolution: None,
            },
            median_ms: 1.5,
            valid: true,
            invalid_reasons: vec![],
            sample_json: "{}".into(),
        }
    }

    #[test]
    fn push_survives_reopen_and_remove_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        spool.push(&result("aaa")).unwrap();
        spool.push(&result("bbb")).unwrap();
        let reopened = Spool::open(dir.path()).unwrap();
        let (pending, problems) = reopened.pending().unwrap();
        assert!(problems.is_empty());
        assert_eq!(pending.len(), 2);
        assert_eq!(
            pending
                .iter()
                .filter(|r| r.idempotency_key == "aaa")
                .count(),
            1
        );
        reopened.remove("aaa").unwrap();
        reopened.remove("aaa").unwrap();
        assert_eq!(reopened.len().unwrap(), 1);
    }

    #[test]
    fn corrupt_files_are_set_aside_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        spool.push(&result("good")).unwrap();
        fs::write(dir.path().join("bad.result"), b"\x01\x02").unwrap();
        let (pending, problems) = spool.pending().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(problems.len(), 1);
        assert!(dir.path().join("bad.corrupt").exists());
    }

    #[test]
    fn unwritable_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        fs::write(&file, b"x").unwrap();
        let err = Spool::open(&file.join("spool")).unwrap_err().to_string();
        assert!(err.contains("not-a-dir"), "{err}");
    }

    /// A spool on a full filesystem: the push fails with the OS's "no space"
    /// error naming the file, earlier results stay readable, and no partial
    /// file is left. Needs root to mount a 64 KiB tmpfs (CI runs as root);
    /// elsewhere it says so and returns.
    #[test]
    fn full_disk_is_a_clear_error_and_keeps_earlier_results() {
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("tiny");
        fs::create_dir(&mount).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(&mount)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("SKIPPED full_disk test: cannot mount a tmpfs (not root?)");
            return;
        }
        let outcome = std::panic::catch_unwind(|| {
            let spool = Spool::open(&mount.join("spool")).unwrap();
            let mut stored = 0;
            let mut big = result("k0");
            big.sample_json = "x".repeat(6000);
            let err = loop {
                big.idempotency_key = format!("k{stored}");
                match spool.push(&big) {
                    Ok(()) => stored += 1,
                    Err(e) => break e,
                }
                assert!(stored < 1000, "a 64 KiB filesystem never filled up");
            };
            let text = err.to_string();
            assert!(stored > 0);
            assert!(
                text.contains("No space left") && text.contains(&format!("k{stored}")),
                "{text}"
            );
            let (pending, problems) = spool.pending().unwrap();
            assert_eq!(pending.len(), stored);
            assert!(problems.is_empty());
            let leftovers = fs::read_dir(spool.dir())
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(".tmp")
                })
                .count();
            assert_eq!(leftovers, 0);
        });
        let _ = std::process::Command::new("umount").arg(&mount).status();
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    #[test]
    fn keys_are_unique_and_safe() {
        let a = new_key();
        assert_eq!(a.len(), 32);
        assert_ne!(a, new_key());
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        assert!(spool.push(&result("../escape")).is_err());
    }
}
