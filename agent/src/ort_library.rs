//! Checks and error wording for the onnxruntime shared library, compiled in
//! every build (they need no onnxruntime), so a wrong `--ort-lib` is named
//! precisely before anything is opened: a missing file, something that is
//! not an ELF shared object, a library built for a newer glibc.

use std::io::Read;
use std::path::Path;

use crate::error::{AgentError, Result};

/// The oldest onnxruntime this agent accepts: the `ort` crate is built with
/// its `api-22` feature, so the library must offer C API version 22.
pub const MIN_ORT_MINOR: u32 = 22;

/// Refuses a library path that cannot work before it is handed to the
/// dynamic loader. A bare file name (no `/`) is left to the loader's search
/// path (`LD_LIBRARY_PATH`, `ld.so.cache`), as `dlopen` does.
pub fn precheck(path: &Path) -> Result<()> {
    let shown = path.display().to_string();
    if path.components().count() <= 1 && !path.is_absolute() {
        return Ok(());
    }
    let meta = std::fs::metadata(path).map_err(|e| AgentError::OrtLibraryMissing {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    if !meta.is_file() {
        return Err(AgentError::OrtLibraryInvalid {
            path: shown,
            reason: "not a regular file".into(),
        });
    }
    let mut magic = [0u8; 4];
    let read = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut magic))
        .map_err(|e| AgentError::OrtLibraryMissing {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
    if read < 4 || magic != *b"\x7fELF" {
        return Err(AgentError::OrtLibraryInvalid {
            path: shown,
            reason: "not an ELF shared object (expected libonnxruntime.so.1.N from an onnxruntime wheel or release)".into(),
        });
    }
    Ok(())
}

/// The error for a library the dynamic loader refused, from its message:
/// a glibc symbol version it cannot satisfy means the library was built for
/// a newer system than this board's.
pub fn dlopen_error(path: &Path, message: &str) -> AgentError {
    let shown = path.display().to_string();
    match glibc_requirement(message) {
        Some(required) => AgentError::OrtGlibcTooOld {
            path: shown,
            required,
            system: system_glibc(),
        },
        None => AgentError::OrtLibraryInvalid {
            path: shown,
            reason: message.to_string(),
        },
    }
}

/// `GLIBC_2.28` out of "version `GLIBC_2.28' not found (required by ...)".
pub fn glibc_requirement(message: &str) -> Option<String> {
    let at = message.find("version `GLIBC_")?;
    let rest = &message[at + "version `".len()..];
    let end = rest.find('\'')?;
    Some(rest[..end].to_string())
}

/// This system's glibc version, from `ldd --version`'s first line, if it can
/// be read (only used to word an error).
fn system_glibc() -> String {
    std::process::Command::new("ldd")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .and_then(|l| l.split_whitespace().last().map(str::to_string))
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The minor version of an onnxruntime version string (`1.32.0` -> 32).
pub fn minor_version(version: &str) -> Option<u32> {
    version.split('.').nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_requirements_are_read_from_loader_messages() {
        let msg = "/opt/ort/libonnxruntime.so.1.32.0: /lib/aarch64-linux-gnu/libc.so.6: version `GLIBC_2.28' not found (required by /opt/ort/libonnxruntime.so.1.32.0)";
        assert_eq!(glibc_requirement(msg).as_deref(), Some("GLIBC_2.28"));
        let err = dlopen_error(Path::new("/opt/ort/libonnxruntime.so.1.32.0"), msg);
        let text = err.to_string();
        assert!(matches!(err, AgentError::OrtGlibcTooOld { .. }), "{text}");
        assert!(
            text.contains("GLIBC_2.28") && text.contains("/opt/ort/libonnxruntime.so.1.32.0"),
            "{text}"
        );
        let other = dlopen_error(Path::new("/x.so"), "/x.so: wrong ELF class: ELFCLASS32");
        assert!(
            matches!(other, AgentError::OrtLibraryInvalid { .. }),
            "{other}"
        );
        assert_eq!(glibc_requirement("file too short"), None);
    }

    #[test]
    fn prechecks_name_the_path_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("libonnxruntime.so.1.32.0");
        let err = precheck(&missing).unwrap_err();
        assert!(matches!(err, AgentError::OrtLibraryMissing { .. }), "{err}");
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );

        let fake = dir.path().join("fake.so");
        std::fs::write(&fake, b"#!/bin/sh\necho not a library\n").unwrap();
        let err = precheck(&fake).unwrap_err();
        assert!(matches!(err, AgentError::OrtLibraryInvalid { .. }), "{err}");
        assert!(
            err.to_string().contains("not an ELF shared object"),
            "{err}"
        );

        let err = precheck(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");

        let elf = dir.path().join("elf.so");
        std::fs::write(&elf, b"\x7fELF\x02\x01\x01").unwrap();
        assert!(precheck(&elf).is_ok());
        // A bare name is the loader's to find.
        assert!(precheck(Path::new("libonnxruntime.so.1.32.0")).is_ok());
    }

    #[test]
    fn minor_versions() {
        assert_eq!(minor_version("1.32.0"), Some(32));
        assert_eq!(minor_version("1.20.1"), Some(20));
        assert_eq!(minor_version("garbage"), None);
    }
}
