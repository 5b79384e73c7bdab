//! The search spaces agree with the vendored tables on every row.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::collections::HashSet;

use nasflat_shared::vendored::{FBNET_ARCHS, NB201_ARCHS};
use nasflat_shared::{Arch, ArchGraph, FbnetArch, NB201_SIZE, Nb201Arch, SearchSpace};

#[test]
fn nb201_index_arch_string_and_connectivity_match_archs_csv() {
    let text = NB201_ARCHS.text().unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let mut rows = 0;
    for (i, record) in reader.records().enumerate() {
        let record = record.unwrap();
        assert_eq!(record[0].parse::<usize>().unwrap(), i);
        let arch = Nb201Arch::from_index(i).unwrap();
        assert_eq!(arch.to_string(), &record[1], "row {i}");
        let parsed: Nb201Arch = record[1].parse().unwrap();
        assert_eq!(parsed, arch);
        assert_eq!(parsed.index(), i);
        let ids: Vec<u8> = (2..8).map(|c| record[c].parse().unwrap()).collect();
        assert_eq!(arch.ids().to_vec(), ids);
        assert_eq!(arch.output_connected(), &record[8] == "1", "row {i}");
        rows += 1;
    }
    assert_eq!(rows, NB201_SIZE);
    let distinct: HashSet<_> = Nb201Arch::all().iter().collect();
    assert_eq!(distinct.len(), NB201_SIZE);
    let disconnected = Nb201Arch::all()
        .iter()
        .filter(|a| !a.output_connected())
        .count();
    assert_eq!(disconnected, 341);
}

#[test]
fn fbnet_table_matches_archs_csv() {
    let text = FBNET_ARCHS.text().unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let table = FbnetArch::table();
    assert_eq!(table.len(), 5000);
    for (i, record) in reader.records().enumerate() {
        let record = record.unwrap();
        assert_eq!(table[i].key(), &record[1]);
        let ids: Vec<u8> = (2..24).map(|c| record[c].parse().unwrap()).collect();
        assert_eq!(table[i].ids().to_vec(), ids);
    }
    assert_eq!(table[42].index(), Some(42));
    let unseen = FbnetArch::from_ids(&[8; 22]).unwrap();
    assert_eq!(unseen.index(), None);
}

#[test]
fn arch_enum_dispatches_by_space() {
    let a = Arch::from_index(SearchSpace::Fbnet, 0).unwrap();
    assert_eq!(a.to_string(), "7_8_1_8_4_8_8_8_7_4_1_4_7_3_2_7_3_2_4_2_4_5");
    assert_eq!(a.graph().len(), ArchGraph::node_count(SearchSpace::Fbnet));
    assert_eq!(Arch::parse(SearchSpace::Fbnet, &a.to_string()).unwrap(), a);
    assert!(a.expect_space(SearchSpace::Nb201).is_err());
    assert!(Arch::from_index(SearchSpace::Fbnet, 5000).is_err());
    let json = serde_json::to_string(&a).unwrap();
    let back: Arch = serde_json::from_str(&json).unwrap();
    assert_eq!(back, a);
}

#[test]
fn search_space_names_parse() {
    assert_eq!("NB201".parse::<SearchSpace>().unwrap(), SearchSpace::Nb201);
    let err = "darts".parse::<SearchSpace>().unwrap_err().to_string();
    assert!(err.contains("darts"));
}

/// The analytic counter gives `fbnet/zcp.csv`'s params and FLOPs exactly on
/// every table row (the predictor uses it for architectures off the table).
#[test]
fn fbnet_analytic_cost_matches_zcp_table_on_all_rows() {
    let zcp = nasflat_shared::data::zcp_table(SearchSpace::Fbnet).unwrap();
    let (params, flops) = (zcp.column("params").unwrap(), zcp.column("flops").unwrap());
    let archs = FbnetArch::table();
    assert_eq!(archs.len(), 5000);
    let bad: Vec<usize> = archs
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            let c = nasflat_shared::fbnet_cost(a);
            Some(c.params as f64) != params[*i] || Some(c.flops as f64) != flops[*i]
        })
        .map(|(i, _)| i)
        .collect();
    assert!(
        bad.is_empty(),
        "{} rows differ, first {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
}
