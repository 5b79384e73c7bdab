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
    static_musl_linker();
}

/// The static musl agent (profile `dist`) is linked by lld, the linker
/// rustc ships (`<sysroot>/lib/rustlib/<host>/bin/gcc-ld/ld.lld`, what
/// `-C link-self-contained=+linker` would use), with identical code folding
/// (`--icf=all`): functions and constants whose bytes are identical, mostly
/// monomorphised generics of tract and ndarray, are kept once, which is
/// what brings the agent under its size goal (docs/agent-bench.md, "Binary
/// size of the board agent"). Each kept function's instructions are unchanged, so inference
/// runs the same code; Rust makes no promise that two functions or vtables
/// have distinct addresses, which is what `all` (rather than `safe`, which
/// needs address-significance tables rustc does not emit) gives up. lld also
/// keeps `.rodata` out of the executable segment and needs no 64 KiB RELRO
/// padding. Without that linker (a toolchain without `rust-lld`) the agent
/// is linked by the cross gcc's own ld as before, and a warning says so.
fn static_musl_linker() {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let static_musl = var("CARGO_CFG_TARGET_ENV") == "musl"
        && var("CARGO_CFG_TARGET_FEATURE")
            .split(',')
            .any(|f| f == "crt-static");
    if !(dist_profile() && static_musl) {
        return;
    }
    let sysroot = std::process::Command::new(var("RUSTC"))
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| std::path::PathBuf::from(s.trim()));
    let gcc_ld = sysroot.map(|root| {
        root.join("lib/rustlib")
            .join(var("HOST"))
            .join("bin/gcc-ld")
    });
    match gcc_ld.filter(|dir| dir.join("ld.lld").exists()) {
        Some(dir) => {
            println!("cargo::rustc-link-arg-bins=-B{}", dir.display());
            println!("cargo::rustc-link-arg-bins=-fuse-ld=lld");
            println!("cargo::rustc-link-arg-bins=-Wl,--icf=all");
        }
        None => println!(
            "cargo::warning=rustc's lld not found: the static agent is linked without identical code folding and is larger"
        ),
    }
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
/// `CARGO_CFG_PANIC` reads "unwind" under panic = "abort", so
/// `cfg(no_unwind_tables)` lets main.rs refuse to compile if the `dist`
/// profile ever unwinds. Should cargo's layout change, the
/// cut silently goes and `.ci/run`'s size guard fails.
fn unwind_tables() {
    println!("cargo::rustc-check-cfg=cfg(no_unwind_tables)");
    println!("cargo:rerun-if-changed=link/no-unwind-tables.ld");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let board = var("CARGO_CFG_TARGET_ARCH") == "aarch64" && var("CARGO_CFG_TARGET_OS") == "linux";
    if dist_profile() && board {
        let script =
            std::path::Path::new(&var("CARGO_MANIFEST_DIR")).join("link/no-unwind-tables.ld");
        println!("cargo::rustc-link-arg-bins=-Wl,-T,{}", script.display());
        println!("cargo::rustc-cfg=no_unwind_tables");
    }
}

/// Whether this is the `dist` profile. Cargo tells build scripts neither the
/// profile's name nor its panic strategy, so it is read from `OUT_DIR`
/// (`<target-dir>/[<triple>/]<profile>/build/<package>-<hash>/out`).
fn dist_profile() -> bool {
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    let profile = out_dir.ancestors().nth(3).and_then(|p| p.file_name());
    profile.is_some_and(|p| p == "dist")
}
