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
