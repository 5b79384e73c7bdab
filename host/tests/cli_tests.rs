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

/// Runs the host with `args` and asserts the bad-input contract: exit code
/// 2 and a message on stderr that names each of `named`.
fn exits_2_naming(args: &[&str], named: &[&str]) {
    let (code, _, err) = host(args);
    assert_eq!(code, 2, "{args:?}: {err}");
    for n in named {
        assert!(err.contains(n), "{args:?}: `{n}` not named in: {err}");
    }
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
    exits_2_naming(
        &["eval", "--sampler", "zcp-median", "--quiet"],
        &["zcp-median", "<cosine|kmeans|cosine-spread|kmeans-cosine>"],
    );
    exits_2_naming(
        &["eval", "--supplementary", "word2vec", "--quiet"],
        &["word2vec", "arch2vec"],
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
    exits_2_naming(
        &["eval", "--task", "N1,X7,Q", "--method", "flops", "--quiet"],
        &["unknown tasks `X7`, `Q`"],
    );
    exits_2_naming(
        &[
            "eval", "--space", "fbnet", "--task", "N1", "--method", "flops", "--quiet",
        ],
        &["unknown task `N1` in fbnet"],
    );
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
    exits_2_naming(
        &[
            "tasks", "generate", "--space", "fbnet", "--train", "20", "--test", "8",
        ],
        &["--train 20 --test 8", "27 devices"],
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
    let positive = "must be a positive number of milliseconds";
    let cases: [(&[&str], &[&str]); 7] = [
        // A device that is not a test device of the task (here: a source);
        // the test devices are listed.
        (
            &["--device", "pixel3", "--latency-ms", "14"],
            &["`pixel3` is not a test device of task ND", "pixel2"],
        ),
        // A budget that is not positive.
        (&["--device", "pixel2", "--latency-ms=0"], &[positive]),
        (&["--device", "pixel2", "--latency-ms=-3"], &[positive]),
        // A budget below every architecture's latency on the device.
        (
            &["--device", "pixel2", "--latency-ms", "0.5"],
            &["no architecture meets 0.5 ms"],
        ),
        // A risk outside (0, 1).
        (
            &["--device", "pixel2", "--latency-ms", "14", "--risk", "1.5"],
            &["risk 1.5"],
        ),
        // A risk factor below 1 would tighten the user's risk, not calibrate it.
        (
            &[
                "--device",
                "pixel2",
                "--latency-ms",
                "14",
                "--risk-factor",
                "0.5",
            ],
            &["--risk-factor 0.5: must be a number >= 1"],
        ),
        (
            &[
                "--device",
                "pixel2",
                "--latency-ms",
                "14",
                "--risk-factor",
                "nan",
            ],
            &["--risk-factor NaN: must be a number >= 1"],
        ),
    ];
    for (extra, named) in cases {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        exits_2_naming(&args, named);
    }
}

#[test]
fn nas_on_fbnet_refuses_an_accuracy_objective_and_the_nb201_list() {
    let fbnet = ["nas", "--space", "fbnet", "--task", "FD", "--trials", "1"];
    let budget = ["--device", "fpga", "--latency-ms", "20"];
    exits_2_naming(
        &[&fbnet[..], &budget].concat(),
        &["fbnet has no `cifar100` objective", "flops"],
    );
    exits_2_naming(
        &[&fbnet[..], &budget, &["--dataset", "flops"]].concat(),
        &["use --mode exhaustive"],
    );
}

/// `serve` creates its admin, viewer and enrolment tokens readable by the
/// owner only (created 0600, not chmod'ed after), and exits 2 naming the
/// address it cannot bind. (The create-then-chmod window the old code had
/// cannot be observed from outside; this pins the files and their mode.)
#[test]
fn serve_creates_private_token_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    exits_2_naming(
        &[
            "serve",
            "--listen",
            "192.0.2.1:9",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &["192.0.2.1:9"],
    );
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
        exits_2_naming(&[&base[..], args].concat(), &[needle]);
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
        &["eval", "--recipe", "bogus", "--quiet"][..],
        &["serve", "--recipe", "bogus"],
        &["nas", "--recipe", "bogus"],
    ] {
        exits_2_naming(command, &["--recipe", "bogus", "served or paper"]);
    }
}

/// `--mode probed` refuses plans it cannot run before any training.
#[test]
fn nas_probed_refuses_impossible_plans() {
    let base = [
        "nas",
        "--space",
        "nb201",
        "--task",
        "ND",
        "--device",
        "pixel2",
        "--latency-ms",
        "14",
        "--mode",
        "probed",
        "--trials",
        "1",
    ];
    let cases: [(&[&str], &[&str]); 3] = [
        (&["--probes", "0"], &["--probes 0", "--mode exhaustive"]),
        (
            &["--probes", "19", "--samples", "20"],
            &["probes", "at most 18 of the 20 samples", "19"],
        ),
        (
            &["--probes", "4", "--probe-rounds", "5"],
            &["probe rounds", "5"],
        ),
    ];
    for (extra, named) in cases {
        exits_2_naming(&[&base[..], extra].concat(), named);
    }
}

/// `--mode probed` spends the given probes of the k samples near the
/// budget: every answer is within the budget by its measurement or its
/// bound, a measured answer's bound is its true latency, and the trivial
/// fit runs under the same plan.
#[test]
fn nas_probed_answers_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("probed.json");
    let args = [
        "nas",
        "--space",
        "nb201",
        "--task",
        "ND",
        "--device",
        "fpga",
        "--latency-ms",
        "4,6",
        "--mode",
        "probed",
        "--probes",
        "6",
        "--probe-rounds",
        "2",
        "--trials",
        "1",
        "--epochs",
        "1",
        "--json",
        json.to_str().unwrap(),
    ];
    let (code, out, err) = host(&args);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("| probed | nasflat@0.95 | fpga |"), "{out}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4, "2 budgets x (nasflat, trivial)");
    for r in runs {
        assert_eq!(r["mode"], "probed");
        assert_eq!(r["probes"], 6);
        let c = r["constraint_ms"].as_f64().unwrap();
        let upper = r["upper_ms"].as_f64().unwrap();
        assert!(upper <= c, "{r}");
        if r["measured"] == true {
            assert_eq!(r["upper_ms"], r["true_ms"], "{r}");
            assert!(!r["violated"].as_bool().unwrap(), "{r}");
        }
    }
}
