//! `--runtime ort`: runtime selection, every refusal (exit 2 naming the
//! path, version or feature), and, when `NASFLAT_ORT_LIB` names a real
//! onnxruntime library (CI sets it), timings and outputs from it.
//!
//! Every case runs the agent binary: onnxruntime is loaded once per
//! process, so each library path gets a process of its own.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nasflat_onnx::{Nb201Config, encode, nb201_model};
use nasflat_shared::Nb201Arch;
use prost::Message;
use tract_onnx::pb;

const QUICK: &[&str] = &[
    "--warmup-runs",
    "1",
    "--min-runs",
    "3",
    "--min-ms",
    "1",
    "--max-runs",
    "5",
    "--json",
];

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nasflat-agent"))
        .args(args)
        .env_remove("ORT_DYLIB_PATH")
        .output()
        .unwrap()
}

fn measure_nb201(extra: &[&str]) -> Output {
    let mut args = vec!["measure", "--space", "nb201", "--index", "0"];
    args.extend_from_slice(QUICK);
    args.extend_from_slice(extra);
    agent(&args)
}

/// Exit 2, stdout clean, stderr naming `needle`, no panic.
fn assert_refused(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(needle), "expected `{needle}` in: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.stdout.is_empty(), "stdout must stay clean");
}

/// The real library, or `None` with the reason printed.
fn real_library() -> Option<PathBuf> {
    if !nasflat_agent::runtime::ORT_SUPPORTED {
        println!("skipped: this build has no onnxruntime support (feature `ort`)");
        return None;
    }
    match std::env::var_os("NASFLAT_ORT_LIB") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            println!(
                "skipped: set NASFLAT_ORT_LIB to a libonnxruntime.so.1.N (>= 1.22) to run this test (CI does)"
            );
            None
        }
    }
}

#[test]
fn unknown_runtime_is_a_usage_error() {
    assert_refused(
        &measure_nb201(&["--runtime", "tflite"]),
        "unknown runtime `tflite`",
    );
}

#[test]
fn ort_without_a_library_names_the_flag_or_the_feature() {
    let out = measure_nb201(&["--runtime", "ort"]);
    if nasflat_agent::runtime::ORT_SUPPORTED {
        assert_refused(&out, "--ort-lib");
    } else {
        assert_refused(&out, "feature `ort`");
    }
}

#[test]
fn missing_and_fake_libraries_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("libonnxruntime.so.1.32.0");
    let missing_s = missing.display().to_string();
    let fake = dir.path().join("libonnxruntime.so.1.99.0");
    std::fs::write(&fake, "this is a text file, not a shared object\n").unwrap();
    let fake_s = fake.display().to_string();
    if !nasflat_agent::runtime::ORT_SUPPORTED {
        let out = measure_nb201(&["--runtime", "ort", "--ort-lib", &missing_s]);
        assert_refused(&out, "feature `ort`");
        return;
    }
    let out = measure_nb201(&["--runtime", "ort", "--ort-lib", &missing_s]);
    assert_refused(&out, &missing_s);
    assert_refused(&out, "cannot be read");
    let out = measure_nb201(&["--runtime", "ort", "--ort-lib", &fake_s]);
    assert_refused(&out, &fake_s);
    assert_refused(&out, "not an ELF shared object");
    // The same through the environment variable the ort crate documents.
    let out = Command::new(env!("CARGO_BIN_EXE_nasflat-agent"))
        .args([
            "measure",
            "--space",
            "nb201",
            "--index",
            "0",
            "--runtime",
            "ort",
        ])
        .env("ORT_DYLIB_PATH", &fake)
        .output()
        .unwrap();
    assert_refused(&out, &fake_s);
}

/// A real shared object that is not onnxruntime (this system's libm).
#[test]
fn a_shared_object_that_is_not_onnxruntime_is_refused() {
    if !nasflat_agent::runtime::ORT_SUPPORTED {
        println!("skipped: no onnxruntime support in this build");
        return;
    }
    let candidates = [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/lib/aarch64-linux-gnu/libm.so.6",
        "/usr/lib/aarch64-linux-gnu/libm.so.6",
    ];
    let Some(libm) = candidates.iter().find(|p| Path::new(p).exists()) else {
        println!("skipped: no libm.so.6 at the usual paths");
        return;
    };
    let out = measure_nb201(&["--runtime", "ort", "--ort-lib", libm]);
    assert_refused(&out, "OrtGetApiBase");
    assert_refused(&out, libm);
}

/// A one-node model with an operator no runtime has.
fn unknown_op_model() -> Vec<u8> {
    let ty = pb::TypeProto {
        value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
            elem_type: 1,
            shape: Some(pb::TensorShapeProto {
                dim: [1i64, 4]
                    .iter()
                    .map(|&d| pb::tensor_shape_proto::Dimension {
                        value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(d)),
                        ..Default::default()
                    })
                    .collect(),
            }),
        })),
        ..Default::default()
    };
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(pb::GraphProto {
            name: "g".into(),
            node: vec![pb::NodeProto {
                op_type: "FrobnicateV9".into(),
                input: vec!["x".into()],
                output: vec!["y".into()],
                name: "n0".into(),
                ..Default::default()
            }],
            input: vec![pb::ValueInfoProto {
                name: "x".into(),
                r#type: Some(ty),
                ..Default::default()
            }],
            output: vec![pb::ValueInfoProto {
                name: "y".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn read_dump(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn values(dump: &serde_json::Value, side: &str) -> Vec<f64> {
    dump[side][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

/// With a real library: the sample says which runtime, version, library and
/// settings timed it; ort and tract see the same input and agree on the
/// output; a model onnxruntime cannot load is refused by name.
#[test]
fn real_library_times_records_and_agrees_with_tract() {
    let Some(lib) = real_library() else { return };
    let lib_s = lib.display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("nb201_0.onnx");
    let arch = Nb201Arch::from_index(0).unwrap();
    std::fs::write(
        &model,
        encode(&nb201_model(&arch, &Nb201Config::default()).unwrap()),
    )
    .unwrap();
    let model_s = model.display().to_string();
    let ort_dump = dir.path().join("ort.json");
    let tract_dump = dir.path().join("tract.json");

    let mut args = vec!["measure", model_s.as_str()];
    args.extend_from_slice(QUICK);
    let ort_dump_s = ort_dump.display().to_string();
    let mut ort_args = args.clone();
    ort_args.extend_from_slice(&[
        "--runtime",
        "ort",
        "--ort-lib",
        &lib_s,
        "--dump-output",
        &ort_dump_s,
    ]);
    let out = agent(&ort_args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let sample: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runtime = &sample["provenance"]["runtime"];
    assert_eq!(runtime["kind"], "ort", "{runtime}");
    assert_eq!(runtime["library"], lib_s.as_str(), "{runtime}");
    assert_eq!(runtime["intra_threads"], 1, "{runtime}");
    assert_eq!(runtime["inter_threads"], 1, "{runtime}");
    assert_eq!(runtime["optimization"], "ort_enable_all", "{runtime}");
    let version = runtime["version"].as_str().unwrap();
    let minor: u32 = version.split('.').nth(1).unwrap().parse().unwrap();
    assert!(minor >= 22, "{version}");
    assert_eq!(
        sample["timing"]["output_shapes"],
        serde_json::json!([[1, 10]])
    );
    assert!(sample["timing"]["summary"]["median_ms"].as_f64().unwrap() > 0.0);

    let tract_dump_s = tract_dump.display().to_string();
    let mut tract_args = args.clone();
    tract_args.extend_from_slice(&["--dump-output", &tract_dump_s]);
    let out = agent(&tract_args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sample: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sample["provenance"]["runtime"]["kind"], "tract");

    let (o, t) = (read_dump(&ort_dump), read_dump(&tract_dump));
    assert_eq!(o["runtime"], "ort");
    assert_eq!(
        values(&o, "inputs"),
        values(&t, "inputs"),
        "same seed, same input"
    );
    let (yo, yt) = (values(&o, "outputs"), values(&t, "outputs"));
    assert_eq!(yo.len(), 10);
    let scale = yt.iter().fold(1e-12f64, |m, v| m.max(v.abs()));
    let worst = yo
        .iter()
        .zip(&yt)
        .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        worst <= 1e-4 * scale,
        "ort vs tract differ by {worst} (scale {scale})"
    );

    let bad = dir.path().join("frobnicate.onnx");
    std::fs::write(&bad, unknown_op_model()).unwrap();
    let bad_s = bad.display().to_string();
    let out = agent(&["measure", &bad_s, "--runtime", "ort", "--ort-lib", &lib_s]);
    assert_refused(&out, "onnxruntime cannot load");
    assert_refused(&out, &bad_s);
}

/// An onnxruntime older than the agent's API level (CI: 1.20.1 from PyPI)
/// is refused naming its version and the minimum.
#[test]
fn a_library_too_old_for_the_api_level_is_refused() {
    if !nasflat_agent::runtime::ORT_SUPPORTED {
        println!("skipped: no onnxruntime support in this build");
        return;
    }
    let Some(old) = std::env::var_os("NASFLAT_ORT_OLD_LIB").filter(|p| !p.is_empty()) else {
        println!(
            "skipped: set NASFLAT_ORT_OLD_LIB to an onnxruntime < 1.22 (e.g. 1.20.1) to run this test"
        );
        return;
    };
    let old = old.to_string_lossy().to_string();
    let out = measure_nb201(&["--runtime", "ort", "--ort-lib", &old]);
    assert_refused(&out, "too old");
    assert_refused(&out, ">= 1.22");
    assert_refused(&out, &old);
}
