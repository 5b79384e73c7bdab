//! The `nasflat-onnx` binary: exports that load, counts that print, and
//! bad arguments that fail with exit code 2 and a message naming the culprit.

// Helpers outside `#[test]` fns panic on failure too: that is the report.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use nasflat_onnx::{ModelProto, model_cost};

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nasflat-onnx"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn read_model(path: &Path) -> ModelProto {
    let bytes = std::fs::read(path).unwrap();
    <ModelProto as prost::Message>::decode(bytes.as_slice()).unwrap()
}

/// Asserts exit code 2 and that stderr mentions every `needle`.
fn assert_usage_error(args: &[&str], needles: &[&str]) {
    let out = cli(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    for needle in needles {
        assert!(err.contains(needle), "{args:?}: `{needle}` not in: {err}");
    }
}

#[test]
fn export_nb201_by_index_writes_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    let out = cli(&[
        "export",
        "--space",
        "nb201",
        "--index",
        "0",
        "--batch",
        "2",
        "--seed",
        "3",
        "-o",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cost = model_cost(&read_model(&path)).unwrap();
    assert_eq!(cost.input_shape, vec![2, 3, 32, 32]);
    assert_eq!(cost.output_shape, vec![2, 10]);
    assert_eq!(cost.params, 129_306);
}

#[test]
fn export_fbnet_by_arch_key_writes_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.onnx");
    let key = "7_8_1_8_4_8_8_8_7_4_1_4_7_3_2_7_3_2_4_2_4_5";
    let out = cli(&[
        "export",
        "--space",
        "fbnet",
        "--arch",
        key,
        "--resolution",
        "64",
        "-o",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let model = read_model(&path);
    let cost = model_cost(&model).unwrap();
    assert_eq!(cost.input_shape, vec![1, 3, 64, 64]);
    assert_eq!(cost.output_shape, vec![1, 100]);
    let arch = model
        .metadata_props
        .iter()
        .find(|p| p.key == "arch")
        .unwrap();
    assert_eq!(arch.value, key);
}

#[test]
fn export_all_with_limit_names_files_by_index() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli(&[
        "export",
        "--space",
        "nb201",
        "--all",
        "--limit",
        "3",
        "--out-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["nb201_00000.onnx", "nb201_00001.onnx", "nb201_00002.onnx"]
    );
}

#[test]
fn info_prints_params_and_flops() {
    let out = cli(&["info", "--space", "nb201", "--index", "0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("params: 129306"), "{text}");
    assert!(text.contains("flops_tensorwatch: 17958592"), "{text}");
    let out = cli(&["info", "--space", "fbnet", "--index", "0"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("params: 1790500"), "{text}");
    assert!(text.contains("flops_flopth: 70098816"), "{text}");
}

#[test]
fn bad_arch_names_the_token() {
    let bad = "|avg_pool_3x3~0|+|nor_conv_2x2~0|skip_connect~1|+|none~0|none~1|none~2|";
    assert_usage_error(
        &["info", "--space", "nb201", "--arch", bad],
        &["--arch", "nor_conv_2x2", "position 18"],
    );
    let key = "7_8_1_8_4_8_8_9_7_4_1_4_7_3_2_7_3_2_4_2_4_5";
    assert_usage_error(
        &["info", "--space", "fbnet", "--arch", key],
        &["--arch", "`9`"],
    );
}

#[test]
fn bad_space_index_and_options_exit_2() {
    assert_usage_error(
        &["info", "--space", "nb301", "--index", "0"],
        &["--space", "nb301"],
    );
    assert_usage_error(
        &["info", "--space", "nb201", "--index", "15625"],
        &["--index", "15625"],
    );
    assert_usage_error(
        &["info", "--space", "fbnet", "--index", "5000"],
        &["--index", "5000"],
    );
    assert_usage_error(
        &[
            "info",
            "--space",
            "nb201",
            "--index",
            "0",
            "--resolution",
            "30",
        ],
        &["resolution", "30", "multiple of 4"],
    );
    assert_usage_error(
        &["info", "--space", "nb201", "--index", "0", "--batch", "0"],
        &["batch size"],
    );
    assert_usage_error(
        &[
            "info",
            "--space",
            "fbnet",
            "--index",
            "0",
            "--dataset",
            "cifar10",
        ],
        &["--dataset", "cifar10"],
    );
    assert_usage_error(&["info", "--space", "nb201"], &["--arch", "--index"]);
}

#[test]
fn bad_export_combinations_exit_2() {
    assert_usage_error(
        &["export", "--space", "nb201", "--index", "0"],
        &["--output"],
    );
    assert_usage_error(&["export", "--space", "nb201", "--all"], &["--out-dir"]);
    assert_usage_error(
        &[
            "export",
            "--space",
            "nb201",
            "--all",
            "--index",
            "3",
            "--out-dir",
            "x",
        ],
        &["--index"],
    );
    assert_usage_error(
        &[
            "export",
            "--space",
            "nb201",
            "--index",
            "0",
            "-o",
            "/nonexistent-dir/m.onnx",
        ],
        &["cannot write", "/nonexistent-dir/m.onnx"],
    );
}
