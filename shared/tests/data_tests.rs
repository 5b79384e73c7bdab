//! The vendored tables load with the shapes and gaps the provenance README states.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use nasflat_shared::SearchSpace;
use nasflat_shared::data::{self, NumericTable, TaskSet};

#[test]
fn nb201_latency_has_40_devices_and_eagle_gaps() {
    let t = data::latency_table(SearchSpace::Nb201).unwrap();
    assert_eq!(t.names().len(), 40);
    assert_eq!(t.rows(), 15_625);
    let missing = |d: &str| t.column(d).unwrap().iter().filter(|v| v.is_none()).count();
    assert_eq!(missing("1080ti_1"), 0);
    assert_eq!(missing("desktop_cpu_core_i7_7820x_fp32"), 341);
    assert_eq!(missing("mobile_cpu_snapdragon_450_cortex_a53_int8"), 373);
    assert_eq!(missing("mobile_gpu_snapdragon_675_adreno_612_int8"), 364);
    // Sanity table of the data README (4 significant digits): min 3.597 ms, max 17.09 ms.
    let col = t.column("1080ti_1").unwrap();
    let min = col.iter().flatten().cloned().fold(f64::INFINITY, f64::min);
    let max = col.iter().flatten().cloned().fold(0.0, f64::max);
    assert!(
        (min - 3.597).abs() < 5e-4 && (max - 17.09).abs() < 5e-3,
        "{min} {max}"
    );
    assert!(t.column("no_such_device").is_err());
}

#[test]
fn fbnet_latency_has_27_complete_devices() {
    let t = data::latency_table(SearchSpace::Fbnet).unwrap();
    assert_eq!(t.names().len(), 27);
    assert_eq!(t.rows(), 5000);
    for i in 0..t.names().len() {
        assert!(t.column_at(i).iter().all(Option::is_some));
    }
}

#[test]
fn every_task_device_is_a_latency_column() {
    let tasks = data::paper_tasks().unwrap();
    for space in SearchSpace::ALL {
        let table = data::latency_table(space).unwrap();
        let names: Vec<_> = tasks.tasks(space).map(|(n, _)| n.to_string()).collect();
        assert_eq!(names.len(), 6, "{space}: {names:?}");
        for (name, task) in tasks.tasks(space) {
            for d in task.train.iter().chain(&task.test) {
                assert!(table.position(d).is_some(), "{space} {name}: {d}");
            }
        }
    }
    let nd = tasks.task(SearchSpace::Nb201, "ND").unwrap();
    assert_eq!(nd.train.len(), 9);
    assert_eq!(nd.test.len(), 6);
    let err = tasks
        .task(SearchSpace::Nb201, "N9")
        .unwrap_err()
        .to_string();
    assert!(err.contains("N9") && err.contains("ND"), "{err}");
}

#[test]
fn zcp_accuracy_devices_and_reference_archs_load() {
    let z = data::zcp_table(SearchSpace::Nb201).unwrap();
    assert_eq!(z.rows(), 15_625);
    assert_eq!(
        z.get(z.position("cifar10_params").unwrap(), 0),
        Some(0.129306)
    );
    let zf = data::zcp_table(SearchSpace::Fbnet).unwrap();
    assert_eq!(zf.names().len(), 13);
    assert_eq!(zf.get(zf.position("params").unwrap(), 0), Some(1_790_500.0));
    let acc = data::nb201_accuracy().unwrap();
    assert_eq!(acc.rows(), 15_625);
    let devices = data::devices().unwrap();
    assert_eq!(devices.len(), 67);
    assert!(
        devices
            .iter()
            .any(|d| d.device == "titan_rtx_256" && d.batch_size == Some(256))
    );
    let subset = data::nb201_zcp_subset().unwrap();
    assert_eq!(subset.rows.len(), 2174);
    assert_eq!(
        data::help_reference_archs(SearchSpace::Nb201)
            .unwrap()
            .len(),
        10
    );
}

#[test]
fn bad_tables_name_the_problem() {
    let err = NumericTable::parse("t.csv", "index,a\n0,1.5\n2,3\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("line 3") && err.contains("out of order"),
        "{err}"
    );
    let err = NumericTable::parse("t.csv", "index,a\n0,abc\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("`abc`") && err.contains("column `a`"), "{err}");
    let err = NumericTable::parse("t.csv", "idx,a\n0,1\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("index"), "{err}");
    let ok = NumericTable::parse("t.csv", "index,a,b\n0,1,\n1,,2\n").unwrap();
    assert_eq!(ok.column("a").unwrap(), &[Some(1.0), None]);
    assert!(TaskSet::parse("x.json", "{\"nb201\": []}").is_err());
    let missing = std::path::Path::new("/nonexistent/latency.csv");
    let err = NumericTable::from_path(missing).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/latency.csv"), "{err}");
}

#[test]
fn task_set_round_trips_in_tasks_json_format() {
    let tasks = data::paper_tasks().unwrap();
    let json = serde_json::to_string(&tasks).unwrap();
    let back = TaskSet::parse("round.json", &json).unwrap();
    assert_eq!(back, tasks);
}

#[test]
fn metad2a_list_has_500_distinct_nb201_candidates() {
    let list = data::metad2a_candidates().unwrap();
    assert_eq!(list.len(), 500);
    let distinct: std::collections::HashSet<usize> = list.iter().map(|c| c.index).collect();
    assert_eq!(distinct.len(), 500);
    // The list's stated accuracies are CIFAR-100 accuracies of the same
    // architectures: they agree with accuracy.csv to within a point.
    let accuracy = data::nb201_accuracy().unwrap();
    let column = accuracy.column("cifar100_test").unwrap();
    for c in &list {
        let truth = column[c.index].unwrap();
        assert!((truth - c.listed_accuracy).abs() < 1.0, "{c:?} vs {truth}");
    }
    // Walked in order, so the order must be MetaD2A's score, best first.
    assert!(list.windows(2).all(|w| w[0].score >= w[1].score));
}
