//! Records the target triple and the tract version the agent was built with,
//! so every measurement can say exactly what produced it.

fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=NASFLAT_TARGET={target}");
    let tract = std::fs::read_to_string("../Cargo.lock")
        .ok()
        .and_then(|lock| {
            let at = lock.find("name = \"tract-onnx\"")?;
            let rest = &lock[at..];
            let v = rest.split("version = \"").nth(1)?;
            Some(v.split('"').next()?.to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=NASFLAT_TRACT_VERSION={tract}");
    println!("cargo:rerun-if-changed=../Cargo.lock");
    ort_cfg();
    unwind_tables();
}

/// `cfg(with_ort)`: the `ort` feature on a target where the `ort` crate is a
/// dependency (glibc Linux on x86_64 or aarch64, see Cargo.toml). One cargo
/// build for several board targets passes `--features ort` to all of them;
/// the static musl and the armv7 agents then simply stay tract-only.
fn ort_cfg() {
    println!("cargo::rustc-check-cfg=cfg(with_ort)");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let feature = std::env::var_os("CARGO_FEATURE_ORT").is_some();
    let glibc = var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu";
    let arch = matches!(var("CARGO_CFG_TARGET_ARCH").as_str(), "x86_64" | "aarch64");
    if feature && glibc && arch {
        println!("cargo::rustc-cfg=with_ort");
    }
}

/// The aarch64 board agents (profile `dist`, which sets panic = "abort") are
/// linked without the unwind tables (`.eh_frame`) of the Rust code, std and
/// libc: nothing unwinds in an aborting binary and a stripped one has no
/// symbols to show in a backtrace, yet the tables are several percent of the
/// static agent (agent/README.md, "Binary size"). This is a link-time cut
/// only: `.text` keeps its address, size and instructions (just the page
/// addresses of the data that moves down change), so inference runs the
/// same machine code. `-C force-unwind-tables=no` would reschedule
/// prologues and leave std's tables in.
///
/// Cargo tells build scripts neither the profile's name nor its panic
/// strategy (`CARGO_CFG_PANIC` reads "unwind" under panic = "abort"), so the
/// profile is read from `OUT_DIR` (`<target-dir>/[<triple>/]<profile>/build/
/// <package>-<hash>/out`), and `cfg(no_unwind_tables)` lets main.rs refuse to
/// compile if that profile ever unwinds. Should cargo's layout change, the
/// cut silently goes and `.ci/run`'s size guard fails.
fn unwind_tables() {
    println!("cargo::rustc-check-cfg=cfg(no_unwind_tables)");
    println!("cargo:rerun-if-changed=link/no-unwind-tables.ld");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let out_dir = std::path::PathBuf::from(var("OUT_DIR"));
    let profile = out_dir.ancestors().nth(3).and_then(|p| p.file_name());
    let board = var("CARGO_CFG_TARGET_ARCH") == "aarch64" && var("CARGO_CFG_TARGET_OS") == "linux";
    if profile.is_some_and(|p| p == "dist") && board {
        let script =
            std::path::Path::new(&var("CARGO_MANIFEST_DIR")).join("link/no-unwind-tables.ld");
        println!("cargo::rustc-link-arg-bins=-Wl,-T,{}", script.display());
        println!("cargo::rustc-cfg=no_unwind_tables");
    }
}
