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
}
