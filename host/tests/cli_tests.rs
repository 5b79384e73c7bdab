//! The CLI's bad-input contract (clear message, exit 2) and `tasks generate`
//! output that `eval --tasks-file` can load.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use nasflat_shared::SearchSpace;
use nasflat_shared::data::TaskSet;

fn host(args: &[&str]) -> (i32, String, String) {
    run(Command::new(env!("CARGO_BIN_EXE_nasflat-host")).args(args))
}

/// The host binary run from an empty working directory, with no encodings
/// folder in the environment unless `encodings_env` names one: what an
/// installed binary sees.
fn host_elsewhere(args: &[&str], encodings_env: Option<&Path>) -> (i32, String, String) {
    let cwd = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nasflat-host"));
    cmd.args(args)
        .current_dir(cwd.path())
        .env_remove("NASFLAT_ENCODINGS_DIR");
    if let Some(dir) = encodings_env {
        cmd.env("NASFLAT_ENCODINGS_DIR", dir);
    }
    run(&mut cmd)
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_sampler_and_encoding_names_exit_2_naming_the_choices() {
    let (code, _, err) = host(&["eval", "--sampler", "zcp-median", "--quiet"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("zcp-median") && err.contains("<cosine|kmeans|cosine-spread|kmeans-cosine>"),
        "{err}"
    );
    let (code, _, err) = host(&["eval", "--supplementary", "word2vec", "--quiet"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("word2vec") && err.contains("arch2vec"),
        "{err}"
    );
}

#[test]
fn comma_separated_tasks_run_across_spaces_and_unknown_names_are_named() {
    let (code, out, err) = host(&[
        "eval",
        "--task",
        "N1, F2,N1",
        "--method",
        "flops",
        "--trials",
        "1",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("| flops |") && l.contains(" ± "))
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows[0].starts_with("| nb201 | N1 |"), "{out}");
    assert!(rows[1].starts_with("| fbnet | F2 |"), "{out}");
    let (code, _, err) = host(&["eval", "--task", "N1,X7,Q", "--method", "flops", "--quiet"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown tasks `X7`, `Q`"), "{err}");
    let (code, _, err) = host(&[
        "eval", "--space", "fbnet", "--task", "N1", "--method", "flops", "--quiet",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown task `N1` in fbnet"), "{err}");
}

#[test]
fn missing_retrained_encoding_exits_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "eval",
        "--space",
        "fbnet",
        "--task",
        "FD",
        "--method",
        "flops",
        "--sampler",
        "cate-kmeans",
        "--quiet",
    ];
    let flag = [
        &args[..],
        &["--encodings-dir", dir.path().to_str().unwrap()],
    ]
    .concat();
    for (args, env) in [(&flag[..], None), (&args[..], Some(dir.path()))] {
        let (code, _, err) = host_elsewhere(args, env);
        assert_eq!(code, 2, "{err}");
        let file = dir.path().join("fbnet_cate.csv.gz");
        assert!(err.contains(&file.display().to_string()), "{err}");
    }
}

#[test]
fn learned_encoding_samplers_and_supplementary_run_on_the_compiled_in_files() {
    for (space, task, sampler, supplementary) in [
        ("nb201", "N1", "caz-kmeans", "caz"),
        ("fbnet", "F1", "cate-cosine-spread", "arch2vec"),
    ] {
        let args = [
            "eval",
            "--space",
            space,
            "--task",
            task,
            "--method",
            "stacked",
            "--trials",
            "1",
            "--samples",
            "5",
            "--sampler",
            sampler,
            "--supplementary",
            supplementary,
            "--quiet",
        ];
        let (code, out, err) = host_elsewhere(&args, None);
        assert_eq!(code, 0, "{sampler}: {err}");
        assert!(err.contains(&format!("sampler {sampler}")), "{err}");
        let row = format!("| {space} | {task} | stacked | ");
        let line = out.lines().find(|l| l.starts_with(&row)).unwrap();
        let rho: f64 = line[row.len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(rho > 0.0 && rho <= 1.0, "{line}");
        // NB201's shipped computed proxies cover every arch: used, and the
        // notes say GraSP is left out and which proxies rank archs last.
        assert_eq!(
            err.contains("grasp left out (defined for 0 of 15625 archs)")
                && err.contains("jacov undefined for 341 archs, ranked last"),
            space == "nb201",
            "{err}"
        );
        assert!(!err.contains("covers"), "{err}");
    }
}

#[test]
fn tasks_generate_rejects_too_many_devices() {
    let (code, _, err) = host(&[
        "tasks", "generate", "--space", "fbnet", "--train", "20", "--test", "8",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--train 20 --test 8") && err.contains("27 devices"),
        "{err}"
    );
}

#[test]
fn tasks_generate_writes_a_loadable_task_with_the_requested_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.json");
    let args = [
        "tasks", "generate", "--space", "fbnet", "--train", "6", "--test", "3", "--seed", "5",
        "--name", "X", "-o",
    ];
    let (code, _, err) = host(&[&args[..], &[path.to_str().unwrap()]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("mean train-test Spearman"), "{err}");
    let set = TaskSet::from_path(&path).unwrap();
    let task = set.task(SearchSpace::Fbnet, "X").unwrap();
    assert_eq!((task.train.len(), task.test.len()), (6, 3));
    assert!(task.train.iter().all(|d| !task.test.contains(d)));
    let first = std::fs::read_to_string(&path).unwrap();
    host(&[&args[..], &[path.to_str().unwrap()]].concat());
    assert_eq!(first, std::fs::read_to_string(&path).unwrap(), "seeded");
    let (code, out, err) = host(&[
        "eval",
        "--tasks-file",
        path.to_str().unwrap(),
        "--method",
        "ridgecost",
        "--trials",
        "1",
        "--samples",
        "5",
        "--sampler",
        "zcp-cosine",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("| fbnet | X | ridgecost |"), "{out}");
}

#[test]
fn nas_bad_input_exits_2_naming_what_is_wrong() {
    let base = ["nas", "--space", "nb201", "--task", "ND", "--trials", "1"];
    let nas = |extra: &[&str]| {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        host(&args)
    };
    // A device that is not a test device of the task (here: a source).
    let (code, _, err) = nas(&["--device", "pixel3", "--latency-ms", "14"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("`pixel3` is not a test device of task ND"),
        "{err}"
    );
    assert!(err.contains("pixel2"), "the test devices are listed: {err}");
    // A budget that is not positive.
    for c in ["0", "-3"] {
        let (code, _, err) = nas(&["--device", "pixel2", &format!("--latency-ms={c}")]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("must be a positive number of milliseconds"),
            "{err}"
        );
    }
    // A budget below every architecture's latency on the device.
    let (code, _, err) = nas(&["--device", "pixel2", "--latency-ms", "0.5"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no architecture meets 0.5 ms"), "{err}");
    // A risk outside (0, 1).
    let (code, _, err) = nas(&["--device", "pixel2", "--latency-ms", "14", "--risk", "1.5"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("risk 1.5"), "{err}");
    // A risk factor below 1 would tighten the user's risk, not calibrate it.
    for (f, shown) in [("0.5", "0.5"), ("nan", "NaN")] {
        let (code, _, err) = nas(&[
            "--device",
            "pixel2",
            "--latency-ms",
            "14",
            "--risk-factor",
            f,
        ]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains(&format!("--risk-factor {shown}: must be a number >= 1")),
            "{err}"
        );
    }
}

#[test]
fn nas_on_fbnet_refuses_an_accuracy_objective_and_the_nb201_list() {
    let fbnet = ["nas", "--space", "fbnet", "--task", "FD", "--trials", "1"];
    let (code, _, err) = host(&[&fbnet[..], &["--device", "fpga", "--latency-ms", "20"]].concat());
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("fbnet has no `cifar100` objective") && err.contains("flops"),
        "{err}"
    );
    let (code, _, err) = host(
        &[
            &fbnet[..],
            &[
                "--device",
                "fpga",
                "--latency-ms",
                "20",
                "--dataset",
                "flops",
            ],
        ]
        .concat(),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("use --mode exhaustive"), "{err}");
}

/// `serve` creates its admin, viewer and enrolment tokens readable by the
/// owner only (created 0600, not chmod'ed after), and exits 2 naming the
/// address it cannot bind. (The create-then-chmod window the old code had
/// cannot be observed from outside; this pins the files and their mode.)
#[test]
fn serve_creates_private_token_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (code, _, err) = host(&[
        "serve",
        "--listen",
        "192.0.2.1:9",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("192.0.2.1:9"), "{err}");
    for name in ["admin-token", "viewer-token", "enrol-token"] {
        let path = data.join(name);
        let token = std::fs::read_to_string(&path).unwrap();
        assert_eq!(token.len(), 64, "{name}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }
}

#[test]
fn nas_evolution_refuses_what_it_cannot_search() {
    let cases: [(&[&str], &str); 3] = [
        (
            &["--space", "nb201", "--task", "ND", "--device", "pixel2"],
            "searches FBNet's open space",
        ),
        (
            &[
                "--space",
                "fbnet",
                "--task",
                "FD",
                "--device",
                "fpga",
                "--dataset",
                "synflow",
            ],
            "flops or params",
        ),
        (
            &[
                "--space",
                "fbnet",
                "--task",
                "FD",
                "--device",
                "fpga",
                "--dataset",
                "flops",
                "--evaluations",
                "10",
            ],
            "evolution budget",
        ),
    ];
    for (args, needle) in cases {
        let base = [
            "nas",
            "--mode",
            "evolution",
            "--latency-ms",
            "20",
            "--trials",
            "1",
        ];
        let (code, _, err) = host(&[&base[..], args].concat());
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// `--mode evolution` answers with architectures the FBNet parser accepts,
/// within the budget by their bound, with the evaluations it was given, and
/// the same predictor's exhaustive table answer beside it.
#[test]
fn nas_evolution_answers_valid_architectures_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("evo.json");
    let args = [
        "nas",
        "--space",
        "fbnet",
        "--task",
        "FD",
        "--device",
        "fpga",
        "--latency-ms",
        "24",
        "--dataset",
        "flops",
        "--mode",
        "evolution",
        "--trials",
        "1",
        "--epochs",
        "1",
        "--evaluations",
        "200",
        "--population",
        "20",
        "--tournament",
        "5",
        "--blend",
        "0.85",
        "--json",
        json.to_str().unwrap(),
    ];
    let (code, out, err) = host(&args);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("| evolution | nasflat-open@0.85 | fpga |"),
        "{out}"
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let runs = v["runs"].as_array().unwrap();
    let evo: Vec<&serde_json::Value> = runs.iter().filter(|r| r["mode"] == "evolution").collect();
    assert_eq!(evo.len(), 1);
    let arch: nasflat_shared::FbnetArch = evo[0]["arch"].as_str().unwrap().parse().unwrap();
    assert_eq!(arch.key(), evo[0]["arch"].as_str().unwrap());
    assert!(evo[0]["upper_ms"].as_f64().unwrap() <= 24.0);
    assert!(evo[0]["evaluations"].as_u64().unwrap() <= 200);
    assert!(
        runs.iter()
            .any(|r| r["mode"] == "exhaustive" && r["predictor"] == "nasflat-open@0.85")
    );
}

/// `--recipe` takes `served` or `paper`; anything else exits 2 naming the
/// flag and the choices, in every subcommand that trains.
#[test]
fn unknown_recipe_exits_2_naming_the_flag() {
    for command in [
        vec!["eval", "--recipe", "bogus", "--quiet"],
        vec!["serve", "--recipe", "bogus"],
        vec!["nas", "--recipe", "bogus"],
    ] {
        let (code, _, err) = host(&command);
        assert_eq!(code, 2, "{command:?}: {err}");
        assert!(
            err.contains("--recipe") && err.contains("bogus") && err.contains("served or paper"),
            "{command:?}: {err}"
        );
    }
}
