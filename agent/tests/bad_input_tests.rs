//! Bad models and bad arguments give clear errors, never panics.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::process::Command;
use std::time::Duration;

use nasflat_agent::runtime::Optimization;
use nasflat_agent::{
    AgentError, BenchLimits, InputSpec, LoadedModel, MeasureOptions, ModelSource, measure,
};
use nasflat_onnx::{Nb201Config, encode, nb201_model};
use nasflat_shared::{Arch, Nb201Arch, SearchSpace};
use prost::Message;
use tract_onnx::pb;

fn quick() -> MeasureOptions {
    MeasureOptions {
        limits: BenchLimits {
            warmup_loops: 1,
            warmup_time: Duration::from_millis(50),
            min_runs: 3,
            min_time: Duration::from_millis(1),
            max_time: Duration::from_secs(5),
            max_runs: 5,
            cooldown: Duration::ZERO,
            // Five runs make one or two rounds: settle on one, time once.
            settle: nasflat_agent::label::SettlePolicy {
                round_runs: 1,
                min_rounds: 1,
                window: 1,
                ..Default::default()
            },
            attempts: 1,
        },
        ..MeasureOptions::default()
    }
}

fn nb201_bytes() -> Vec<u8> {
    let arch = Nb201Arch::from_index(0).unwrap();
    encode(&nb201_model(&arch, &Nb201Config::default()).unwrap())
}

fn tensor_type(elem: i32, dims: &[i64]) -> pb::TypeProto {
    pb::TypeProto {
        value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
            elem_type: elem,
            shape: Some(pb::TensorShapeProto {
                dim: dims
                    .iter()
                    .map(|&d| pb::tensor_shape_proto::Dimension {
                        value: Some(if d > 0 {
                            pb::tensor_shape_proto::dimension::Value::DimValue(d)
                        } else {
                            pb::tensor_shape_proto::dimension::Value::DimParam("N".into())
                        }),
                        ..Default::default()
                    })
                    .collect(),
            }),
        })),
        ..Default::default()
    }
}

/// A one-node model `y = OP(x)` with input shape `dims` (0 = symbolic).
fn one_node(op: &str, dims: &[i64]) -> Vec<u8> {
    let model = pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(pb::GraphProto {
            name: "g".into(),
            node: vec![pb::NodeProto {
                op_type: op.into(),
                input: vec!["x".into()],
                output: vec!["y".into()],
                name: "n0".into(),
                ..Default::default()
            }],
            input: vec![pb::ValueInfoProto {
                name: "x".into(),
                r#type: Some(tensor_type(1, dims)),
                ..Default::default()
            }],
            output: vec![pb::ValueInfoProto {
                name: "y".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    model.encode_to_vec()
}

#[test]
fn generated_model_measures_with_valid_flags() {
    let arch = Arch::from_index(SearchSpace::Nb201, 0).unwrap();
    let source = ModelSource::Arch {
        arch,
        batch: 1,
        resolution: None,
    };
    let sample = measure(&source, &quick()).unwrap();
    assert_eq!(sample.timing.output_shapes, vec![vec![1, 10]]);
    assert!(sample.timing.summary.runs >= 3);
    assert!(sample.label_ms() > 0.0);
    assert!(sample.valid, "{:?}", sample.invalid_reasons);
    assert_eq!(sample.provenance.settings.batch_size, Some(1));
}

/// A cell tract's `into_optimized()` rejects (NB201 #14551) is measured
/// through the retry, and its sample says so; an ordinary cell's does not.
#[test]
fn the_axis_pass_retry_is_recorded_in_the_sample() {
    let optimization = |index| {
        let source = ModelSource::Arch {
            arch: Arch::from_index(SearchSpace::Nb201, index).unwrap(),
            batch: 1,
            resolution: None,
        };
        let sample = measure(&source, &quick()).unwrap();
        sample.provenance.runtime.unwrap().optimization
    };
    assert_eq!(optimization(14551), Optimization::TractWithoutAxisPass);
    assert_eq!(optimization(0), Optimization::TractOptimized);
}

#[test]
fn identity_model_with_symbolic_dim_needs_an_override() {
    let bytes = one_node("Relu", &[0, 8]);
    let err = LoadedModel::from_bytes("relu.onnx", &bytes, &[]).unwrap_err();
    assert!(matches!(err, AgentError::SymbolicInput { .. }), "{err}");
    assert!(err.to_string().contains("--input x:SHAPE"), "{err}");
    let spec: InputSpec = "x:4x8".parse().unwrap();
    let model = LoadedModel::from_bytes("relu.onnx", &bytes, &[spec]).unwrap();
    assert_eq!(model.inputs[0].shape, vec![4, 8]);
    let wrong_name: InputSpec = "image:4x8".parse().unwrap();
    let err = LoadedModel::from_bytes("relu.onnx", &bytes, &[wrong_name]).unwrap_err();
    assert!(err.to_string().contains("no input `image`"), "{err}");
}

#[test]
fn truncated_and_corrupt_models_are_rejected() {
    let bytes = nb201_bytes();
    let half = &bytes[..bytes.len() / 2];
    let err = LoadedModel::from_bytes("half.onnx", half, &[]).unwrap_err();
    assert!(matches!(err, AgentError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("half.onnx"), "{err}");
    let err =
        LoadedModel::from_bytes("junk.onnx", b"\xff\xff\xff\xffnot onnx at all", &[]).unwrap_err();
    assert!(matches!(err, AgentError::Corrupt { .. }), "{err}");
    let err = LoadedModel::from_bytes("empty.onnx", b"", &[]).unwrap_err();
    assert!(matches!(err, AgentError::Corrupt { .. }), "{err}");
    let err = LoadedModel::from_path(std::path::Path::new("/nonexistent/m.onnx"), &[]).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/m.onnx"), "{err}");
}

#[test]
fn unsupported_operators_are_named() {
    let err =
        LoadedModel::from_bytes("foo.onnx", &one_node("FrobnicateV9", &[1, 4]), &[]).unwrap_err();
    assert!(
        matches!(err, AgentError::UnsupportedOperator { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("FrobnicateV9"), "{err}");
    let err = LoadedModel::from_bytes("loop.onnx", &one_node("Loop", &[1, 4]), &[]).unwrap_err();
    assert!(err.to_string().contains("Loop"), "{err}");
}

#[test]
fn wrong_input_rank_or_dtype_fails_cleanly() {
    let bytes = nb201_bytes();
    let rank3: InputSpec = "input:1x3x32".parse().unwrap();
    let err = LoadedModel::from_bytes("nb201.onnx", &bytes, &[rank3]).unwrap_err();
    assert!(matches!(err, AgentError::Analysis { .. }), "{err}");
    let channels: InputSpec = "input:1x5x32x32".parse().unwrap();
    assert!(LoadedModel::from_bytes("nb201.onnx", &bytes, &[channels]).is_err());
    let ints: InputSpec = "input:1x3x32x32:i64".parse().unwrap();
    assert!(LoadedModel::from_bytes("nb201.onnx", &bytes, &[ints]).is_err());
}

#[test]
fn control_flow_that_tract_cannot_analyse_is_an_analysis_error() {
    // An `If` without its branch subgraphs: tract knows the operator but
    // cannot translate the node.
    let bytes = one_node("If", &[1]);
    let err = LoadedModel::from_bytes("if.onnx", &bytes, &[]).unwrap_err();
    assert!(matches!(err, AgentError::Analysis { .. }), "{err}");
    assert!(err.to_string().contains("if.onnx"), "{err}");
}

#[test]
fn cli_errors_exit_2_with_a_message() {
    let bin = env!("CARGO_BIN_EXE_nasflat-agent");
    let cases: &[(&[&str], &str)] = &[
        (
            &["measure", "/nonexistent/model.onnx"],
            "/nonexistent/model.onnx",
        ),
        (
            &["measure", "--space", "nb201", "--arch", "|conv~0|"],
            "nb201",
        ),
        (
            &["measure", "--space", "nb201", "--index", "99999"],
            "out of range",
        ),
        (&["measure", "--space", "darts", "--index", "1"], "darts"),
        (
            &[
                "measure",
                "--space",
                "nb201",
                "--index",
                "1",
                "--min-runs",
                "0",
            ],
            "min runs",
        ),
        (&["measure"], "give an ONNX file"),
        (&["frobnicate"], "frobnicate"),
    ];
    for (args, needle) in cases {
        let out = Command::new(bin).args(*args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: stdout must stay clean");
    }
}

/// `--threads 2` times on a private pool in the default build; a build
/// without the `multithread` feature (the board build) refuses it with exit 2
/// and says why, instead of timing on one thread.
#[test]
fn threads_above_one_need_the_multithread_feature() {
    let out = quick_measure(&["--threads", "2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if cfg!(feature = "multithread") {
        assert!(out.status.success(), "{stderr}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["provenance"]["settings"]["threads"], 2, "{v}");
    } else {
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("`multithread` feature"), "{stderr}");
        assert!(out.stdout.is_empty());
    }
}

/// `measure --json` of NB201 arch 7 with the shortest timing budget, plus `extra`.
fn quick_measure(extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nasflat-agent"))
        .args([
            "measure",
            "--space",
            "nb201",
            "--index",
            "7",
            "--json",
            "--min-runs",
            "3",
            "--min-ms",
            "1",
            "--warmup-runs",
            "1",
        ])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn cli_json_is_one_line_on_stdout() {
    let out = quick_measure(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(v["timing"]["summary"]["median_ms"].as_f64().unwrap() > 0.0);
    assert!(v["arch"]["nb201"].as_str().unwrap().starts_with("|"), "{v}");
}

#[test]
fn unreachable_host_exits_2_and_keeps_the_spool() {
    let bin = env!("CARGO_BIN_EXE_nasflat-agent");
    let state = tempfile::tempdir().unwrap();
    // Nothing listens on port 9 (discard) of loopback in the test sandbox.
    let out = Command::new(bin)
        .args([
            "run",
            "--host",
            "http://127.0.0.1:9",
            "--token",
            "t",
            "--max-retries",
            "1",
            "--backoff-ms",
            "10",
        ])
        .arg("--state-dir")
        .arg(state.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("gave up after 2 attempts") && stderr.contains("127.0.0.1:9"),
        "{stderr}"
    );
    assert!(state.path().join("spool").is_dir());
}

#[test]
fn unwritable_spool_exits_2() {
    let bin = env!("CARGO_BIN_EXE_nasflat-agent");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let out = Command::new(bin)
        .args([
            "run",
            "--host",
            "http://127.0.0.1:9",
            "--token",
            "t",
            "--max-retries",
            "0",
        ])
        .arg("--state-dir")
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("spool") && stderr.contains("file"),
        "{stderr}"
    );
}

#[test]
fn unusable_host_url_exits_2_without_retrying() {
    let bin = env!("CARGO_BIN_EXE_nasflat-agent");
    // (--host, what stderr must say besides naming the URL)
    let cases = [
        ("notaurl", "relative URL without a base"),
        ("ftp://127.0.0.1:9", "expected http or https"),
        ("http://bad host:9", "invalid international domain name"),
    ];
    for (host, says) in cases {
        let state = tempfile::tempdir().unwrap();
        let out = Command::new(bin)
            .args(["run", "--host", host, "--token", "t"])
            .args(["--max-retries", "3", "--backoff-ms", "10"])
            .arg("--state-dir")
            .arg(state.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{host}: {stderr}");
        assert!(
            stderr.contains(&format!("host URL {host} is not usable")) && stderr.contains(says),
            "{host}: {stderr}"
        );
        assert!(!stderr.contains("gave up"), "{host}: {stderr}");
    }
}
