//! The store on both backends: every test runs on a fresh SQLite file and,
//! when `NASFLAT_TEST_PG_URL` is set (`.ci/run` starts a throwaway server),
//! on a fresh PostgreSQL database. Same code, same SQL.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::collections::HashSet;

use nasflat_host::service::domain::{Purpose, Subject, TransferState, Trigger};
use nasflat_host::service::store::jobs::NewJob;
use nasflat_host::service::store::measurements::{NewMeasurement, StoreOutcome};
use nasflat_host::service::store::models::NewModel;
use nasflat_host::service::store::transfers::NewPredictions;
use nasflat_host::service::store::{Backend, Store, new_id, sqlite_url};
use nasflat_predictor::nas::Objective;
use nasflat_shared::SearchSpace;

/// A fresh store per backend; the temp dir keeps the SQLite file alive.
async fn stores() -> Vec<(Store, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::connect(&sqlite_url(&dir.path().join("t.db")))
        .await
        .unwrap();
    let mut out = vec![(sqlite, Some(dir))];
    match std::env::var("NASFLAT_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => {
            // One database per test: create it through the server's default one.
            sqlx::any::install_default_drivers();
            let admin = sqlx::AnyPool::connect(&url).await.unwrap();
            let name = new_id("t").replace('-', "_");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&admin)
                .await
                .unwrap();
            let (base, _) = url.rsplit_once('/').unwrap();
            out.push((
                Store::connect(&format!("{base}/{name}")).await.unwrap(),
                None,
            ));
        }
        _ => eprintln!("NASFLAT_TEST_PG_URL not set: PostgreSQL variant skipped (.ci/run sets it)"),
    }
    out
}

fn arch_result(key: &str, lease: Option<&str>, index: usize, ms: f64) -> NewMeasurement {
    NewMeasurement {
        key: key.into(),
        lease_id: lease.map(str::to_string),
        subject: Subject::Arch {
            space: SearchSpace::Nb201,
            arch_index: index,
        },
        median_ms: ms,
        valid: true,
        invalid_reasons: vec![],
        sample_json: "{}".into(),
        settled: None,
    }
}

async fn device(store: &Store) -> String {
    let id = new_id("dev");
    store
        .insert_device(&id, "board", &format!("hash-{id}"), "{}")
        .await
        .unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_devices_and_wal() {
    for (store, dir) in stores().await {
        let id = device(&store).await;
        assert_eq!(
            store.device_by_token(&format!("hash-{id}")).await.unwrap(),
            Some(id.clone())
        );
        assert_eq!(store.device_by_token("nope").await.unwrap(), None);
        store
            .reattach_device(&id, "renamed", "{\"cores\":4}")
            .await
            .unwrap();
        let d = store.device(&id).await.unwrap().unwrap();
        assert_eq!(
            (d.name.as_str(), d.fingerprint_json.as_str()),
            ("renamed", "{\"cores\":4}")
        );
        match store.backend() {
            Backend::Sqlite => {
                assert_eq!(store.journal_mode().await.unwrap().as_deref(), Some("wal"));
                // Reopening applies no migration twice and keeps the data.
                let again = Store::connect(&sqlite_url(&dir.as_ref().unwrap().path().join("t.db")))
                    .await
                    .unwrap();
                assert_eq!(again.devices().await.unwrap().len(), 1);
            }
            Backend::Postgres => assert_eq!(store.journal_mode().await.unwrap(), None),
        }
    }
}

/// Migration 0004 rebuilt `measurements` (SQLite cannot change a primary
/// key in place): after every migration the table has each column that
/// 0001 and 0006 gave it, once, and the indexes of 0001, 0003 and 0004,
/// on both backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measurements_keep_every_column_and_index_across_migrations() {
    for (store, _dir) in stores().await {
        let (columns, indexes) = match store.backend() {
            Backend::Sqlite => (
                "SELECT name FROM pragma_table_info('measurements') ORDER BY name",
                "SELECT name FROM sqlite_master WHERE type = 'index' \
                 AND tbl_name = 'measurements' AND name NOT LIKE 'sqlite_autoindex%' ORDER BY name",
            ),
            Backend::Postgres => (
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_name = 'measurements' ORDER BY column_name",
                "SELECT indexname::text FROM pg_indexes WHERE tablename = 'measurements' \
                 AND indexname NOT LIKE '%_pkey' ORDER BY indexname",
            ),
        };
        let names =
            |sql: &'static str| sqlx::query_scalar::<_, String>(sql).fetch_all(store.pool());
        assert_eq!(
            names(columns).await.unwrap(),
            [
                "arch_index",
                "device_id",
                "idempotency_key",
                "invalid_reasons",
                "job_id",
                "kind",
                "lease_id",
                "median_ms",
                "model_id",
                "purpose",
                "received_ms",
                "sample_json",
                "settled",
                "space",
                "valid",
            ],
            "{:?}",
            store.backend()
        );
        assert_eq!(
            names(indexes).await.unwrap(),
            [
                "measurements_device",
                "measurements_job",
                "measurements_model"
            ],
            "{:?}",
            store.backend()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_are_exclusive_expire_renew_and_release() {
    for (store, _dir) in stores().await {
        let dev = device(&store).await;
        let jobs: Vec<NewJob> = (0..10)
            .map(|i| NewJob::Arch {
                space: SearchSpace::Nb201,
                index: i,
            })
            .collect();
        store
            .insert_jobs(&dev, Purpose::Sample, &jobs)
            .await
            .unwrap();
        // Eight concurrent planners never get one job twice.
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (s, d) = (store.clone(), dev.clone());
            tasks.push(tokio::spawn(async move {
                s.claim_jobs(&d, 3, 60_000, None).await.unwrap()
            }));
        }
        let mut seen = HashSet::new();
        let mut lease_ids = Vec::new();
        for t in tasks {
            for g in t.await.unwrap() {
                assert!(seen.insert(g.job.id.clone()), "job leased twice");
                lease_ids.push(g.lease_id);
            }
        }
        assert_eq!(lease_ids.len(), 10);
        assert!(
            store
                .claim_jobs(&dev, 5, 60_000, None)
                .await
                .unwrap()
                .is_empty()
        );
        let c = store.queue_counts(Some(&dev)).await.unwrap();
        assert_eq!((c.queued, c.leased), (0, 10));
        // One batch: four leases, one of them twice, and an unknown id.
        let mut batch = lease_ids[..4].to_vec();
        batch.push(lease_ids[0].clone());
        batch.push("lease-unknown".into());
        assert_eq!(
            store
                .release_leases(&dev, &batch, "batch", 5)
                .await
                .unwrap(),
            4
        );
        assert_eq!(store.release_leases(&dev, &[], "none", 5).await.unwrap(), 0);
        let c = store.queue_counts(Some(&dev)).await.unwrap();
        assert_eq!((c.queued, c.leased), (4, 6));
        assert_eq!(
            store.claim_jobs(&dev, 5, 60_000, None).await.unwrap().len(),
            4
        );

        // A lease that expires returns to the queue; its old id is lost.
        let dev2 = device(&store).await;
        store
            .insert_jobs(
                &dev2,
                Purpose::Extra,
                &[NewJob::Arch {
                    space: SearchSpace::Nb201,
                    index: 42,
                }],
            )
            .await
            .unwrap();
        let first = store.claim_jobs(&dev2, 1, -1, None).await.unwrap();
        assert_eq!(first.len(), 1);
        let again = store.claim_jobs(&dev2, 1, 60_000, None).await.unwrap();
        assert_eq!(again.len(), 1);
        assert!(again[0].reclaimed);
        let (renewed, lost) = store
            .renew_leases(
                &dev2,
                &[first[0].lease_id.clone(), again[0].lease_id.clone()],
                60_000,
            )
            .await
            .unwrap();
        assert_eq!(renewed, vec![again[0].lease_id.clone()]);
        assert_eq!(lost, vec![first[0].lease_id.clone()]);
        // Another device cannot renew or release it.
        let (r, _) = store
            .renew_leases(&dev, &[again[0].lease_id.clone()], 60_000)
            .await
            .unwrap();
        assert!(r.is_empty());
        assert_eq!(
            store
                .release_leases(&dev, &[again[0].lease_id.clone()], "x", 5)
                .await
                .unwrap(),
            0
        );
        // Released: queued again; after max attempts: failed.
        assert_eq!(
            store
                .release_leases(&dev2, &[again[0].lease_id.clone()], "busy", 5)
                .await
                .unwrap(),
            1
        );
        assert_eq!(store.queue_counts(Some(&dev2)).await.unwrap().queued, 1);
        let third = store.claim_jobs(&dev2, 1, 60_000, None).await.unwrap();
        assert_eq!(third[0].job.attempts, 2);
        store
            .release_leases(&dev2, &[third[0].lease_id.clone()], "model fails", 3)
            .await
            .unwrap();
        let c = store.queue_counts(Some(&dev2)).await.unwrap();
        assert_eq!((c.queued, c.failed), (0, 1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measurements_are_idempotent_and_close_their_job() {
    for (store, _dir) in stores().await {
        let dev = device(&store).await;
        store
            .insert_jobs(
                &dev,
                Purpose::Sample,
                &[NewJob::Arch {
                    space: SearchSpace::Nb201,
                    index: 7,
                }],
            )
            .await
            .unwrap();
        let lease = store
            .claim_jobs(&dev, 1, 60_000, None)
            .await
            .unwrap()
            .remove(0)
            .lease_id;
        let batch = vec![
            arch_result("k1", Some(&lease), 7, 3.5),
            arch_result("k2", Some(&lease), 8, 1.0), // not the lease's arch
            arch_result("k3", None, 9, 2.0),
        ];
        // One result that does not match its lease's job: the batch is
        // rolled back as a whole, nothing stored, the job still leased.
        let out = store.store_measurements(&dev, &batch).await.unwrap();
        assert!(matches!(out[1], StoreOutcome::Rejected(_)), "{out:?}");
        assert_eq!(store.count_measurements().await.unwrap(), 0);
        assert_eq!(store.queue_counts(Some(&dev)).await.unwrap().done, 0);
        // Without it, the rest is stored.
        let batch = vec![batch[0].clone(), batch[2].clone()];
        let out = store.store_measurements(&dev, &batch).await.unwrap();
        assert_eq!(
            out,
            vec![
                StoreOutcome::New {
                    purpose: Purpose::Sample,
                    requeued: false
                },
                StoreOutcome::New {
                    purpose: Purpose::Adhoc,
                    requeued: false
                }
            ]
        );
        // Retrying after a lost ack stores nothing twice.
        let out = store.store_measurements(&dev, &batch[..1]).await.unwrap();
        assert_eq!(out, vec![StoreOutcome::Duplicate]);
        let rows = store.measurements_of_device(&dev).await.unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows.iter().filter(|r| r.key == "k1").count(), 1);
        assert!((rows.iter().find(|r| r.key == "k1").unwrap().median_ms - 3.5).abs() < 1e-12);
        assert_eq!(store.queue_counts(Some(&dev)).await.unwrap().done, 1);
        assert_eq!(store.count_measurements().await.unwrap(), 2);
        assert_eq!(
            store.sample_json(&dev, "k1").await.unwrap().as_deref(),
            Some("{}")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_transfers_and_predictions_round_trip() {
    for (store, _dir) in stores().await {
        let dev = device(&store).await;
        let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        store
            .insert_model_chunk("m1", 0, &bytes[..40_000])
            .await
            .unwrap();
        store
            .insert_model_chunk("m1", 1, &bytes[40_000..])
            .await
            .unwrap();
        // An upload that never finished: chunks, no model row.
        store
            .insert_model_chunk("m-gone", 0, &bytes[..10])
            .await
            .unwrap();
        store
            .insert_model(&NewModel {
                id: "m1",
                name: "net",
                sha256: "abc",
                size_bytes: 70_000,
                inputs: &["input:1x3x32x32".into()],
            })
            .await
            .unwrap();
        let mut read = store.model_chunk("m1", 0).await.unwrap().unwrap();
        read.extend(store.model_chunk("m1", 1).await.unwrap().unwrap());
        assert_eq!(read, bytes);
        assert!(store.model_chunk("m1", 2).await.unwrap().is_none());
        assert_eq!(
            store.model("m1").await.unwrap().unwrap().inputs,
            vec!["input:1x3x32x32"]
        );
        assert!(store.model("m2").await.unwrap().is_none());
        assert_eq!(store.models().await.unwrap().len(), 1);
        assert_eq!(store.delete_abandoned_chunks(3_600_000).await.unwrap(), 0);
        assert_eq!(store.delete_abandoned_chunks(-1000).await.unwrap(), 1);
        assert!(store.model_chunk("m-gone", 0).await.unwrap().is_none());
        assert!(store.model_chunk("m1", 1).await.unwrap().is_some());
        assert!(!store.model_assigned(&dev, "m1").await.unwrap());
        store
            .insert_jobs(
                &dev,
                Purpose::Model,
                &[NewJob::Model {
                    model_id: "m1".into(),
                    inputs: vec![],
                }],
            )
            .await
            .unwrap();
        assert!(store.model_assigned(&dev, "m1").await.unwrap());
        assert_eq!(
            store.open_jobs(10).await.unwrap()[0].subject,
            Subject::Model {
                model_id: "m1".into()
            }
        );
        let lease = store
            .claim_jobs(&dev, 1, 60_000, None)
            .await
            .unwrap()
            .remove(0)
            .lease_id;
        let mut m = arch_result("km", Some(&lease), 0, 4.0);
        m.subject = Subject::Model {
            model_id: "m1".into(),
        };
        store.store_measurements(&dev, &[m]).await.unwrap();
        assert_eq!(store.measurements_of_model("m1").await.unwrap().len(), 1);

        store
            .insert_transfer("x1", &dev, SearchSpace::Nb201, Trigger::Auto)
            .await
            .unwrap();
        store
            .update_transfer("x1", TransferState::Running, 0.5, "fitting", 20)
            .await
            .unwrap();
        let t = store.transfer("x1").await.unwrap().unwrap();
        assert_eq!(
            (t.state, t.samples, t.finished_ms),
            (TransferState::Running, 20, None)
        );
        assert_eq!(store.fail_interrupted_transfers().await.unwrap(), 1);
        let t = store.transfer("x1").await.unwrap().unwrap();
        assert_eq!(t.state, TransferState::Failed);
        assert!(t.finished_ms.is_some());
        assert_eq!(store.transfers("").await.unwrap().len(), 1);
        assert_eq!(store.transfers(&dev).await.unwrap().len(), 1);
        assert!(store.transfers("dev-none").await.unwrap().is_empty());

        let lat: Vec<f64> = (0..15_625).map(|i| 1.0 + f64::from(i) * 1e-3).collect();
        store
            .put_predictions(&NewPredictions {
                device_id: &dev,
                space: SearchSpace::Nb201,
                version: "v1",
                transfer_id: "x1",
                base_version: "base",
                init_from: Some("pixel3"),
                train_rows: &[1, 2],
                latencies: &lat,
                choice: None,
            })
            .await
            .unwrap();
        store
            .put_predictions(&NewPredictions {
                device_id: &dev,
                space: SearchSpace::Nb201,
                version: "v2",
                transfer_id: "x1",
                base_version: "base",
                init_from: None,
                train_rows: &[3],
                latencies: &lat[..10],
                choice: None,
            })
            .await
            .unwrap();
        let p = store
            .predictions(&dev, SearchSpace::Nb201)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (p.version.as_str(), p.train_rows.clone(), p.latencies.len()),
            ("v2", vec![3], 10)
        );
        assert_eq!(p.init_from, None);
        assert_eq!(
            store
                .prediction_version(&dev, SearchSpace::Nb201)
                .await
                .unwrap()
                .as_deref(),
            Some("v2")
        );
        assert!(
            store
                .predictions(&dev, SearchSpace::Fbnet)
                .await
                .unwrap()
                .is_none()
        );
    }
}

/// Searches round-trip (candidates, source, the newest per device and
/// space), and a predictor's residuals are read back only for its own
/// version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_and_residuals_round_trip() {
    use nasflat_host::service::store::searches::{SearchRow, SearchSource, StoredCandidate};
    for (store, _dir) in stores().await {
        let dev = device(&store).await;
        let row = |id: &str, created_ms: i64| SearchRow {
            id: id.into(),
            device_id: dev.clone(),
            space: SearchSpace::Nb201,
            objective: Objective::Cifar100,
            max_latency_ms: 14.0,
            risk: 0.1,
            predictor_version: "v1".into(),
            source: SearchSource::Transfer,
            residual_quantile: 0.125,
            candidates: vec![
                StoredCandidate {
                    index: 7,
                    predicted_ms: 11.5,
                    upper_ms: 13.0,
                    objective: 71.25,
                    job_id: Some("job-a".into()),
                },
                StoredCandidate {
                    index: 9,
                    predicted_ms: 10.0,
                    upper_ms: 11.3,
                    objective: 70.0,
                    job_id: None,
                },
            ],
            created_ms,
        };
        let first = row("search-a", 1);
        store.insert_search(&first).await.unwrap();
        let mut table = row("search-b", 2);
        table.source = SearchSource::Table;
        store.insert_search(&table).await.unwrap();
        assert_eq!(store.search("search-a").await.unwrap(), Some(first));
        assert!(store.search("search-none").await.unwrap().is_none());
        let latest = store.latest_search(&dev, SearchSpace::Nb201).await.unwrap();
        assert_eq!(latest, Some(table));
        assert!(
            store
                .latest_search(&dev, SearchSpace::Fbnet)
                .await
                .unwrap()
                .is_none()
        );
        assert!(store.insert_search(&row("search-a", 3)).await.is_err());

        store
            .put_residuals(&dev, SearchSpace::Nb201, "v1", &[0.5, -0.25])
            .await
            .unwrap();
        store
            .put_residuals(&dev, SearchSpace::Nb201, "v2", &[0.125])
            .await
            .unwrap();
        assert_eq!(
            store
                .residuals(&dev, SearchSpace::Nb201, "v1")
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .residuals(&dev, SearchSpace::Nb201, "v2")
                .await
                .unwrap(),
            Some(vec![0.125])
        );
    }
}

fn verify_search(id: &str, device_id: &str) -> nasflat_host::service::store::searches::SearchRow {
    use nasflat_host::service::store::searches::{SearchRow, SearchSource, StoredCandidate};
    SearchRow {
        id: id.into(),
        device_id: device_id.into(),
        space: SearchSpace::Nb201,
        objective: Objective::Cifar100,
        max_latency_ms: 14.0,
        risk: 0.1,
        predictor_version: "v1".into(),
        source: SearchSource::Transfer,
        residual_quantile: 0.1,
        candidates: [7, 9, 11]
            .iter()
            .map(|&index| StoredCandidate {
                index,
                predicted_ms: 10.0,
                upper_ms: 11.0,
                objective: 70.0,
                job_id: None,
            })
            .collect(),
        created_ms: 1,
    }
}

/// A search's verification jobs and the search row are written in one
/// transaction: when the search cannot be stored (here its id is taken),
/// no job is left queued for the agent; when it can, both are there and
/// each candidate names its job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_and_its_verification_jobs_are_stored_together() {
    for (store, _dir) in stores().await {
        let dev = device(&store).await;
        let mut first = verify_search("search-a", &dev);
        store
            .insert_search_with_verification(&mut first, &[0, 1])
            .await
            .unwrap();
        let ids: Vec<String> = first
            .candidates
            .iter()
            .filter_map(|c| c.job_id.clone())
            .collect();
        assert_eq!(ids.len(), 2);
        assert!(first.candidates[2].job_id.is_none());
        assert_eq!(store.search("search-a").await.unwrap(), Some(first.clone()));
        let jobs = store.jobs_of_device(&dev).await.unwrap();
        assert_eq!(jobs.len(), 2);
        assert!(
            jobs.iter()
                .all(|j| j.purpose == Purpose::Verify && ids.contains(&j.id))
        );

        let mut clash = verify_search("search-a", &dev);
        assert!(
            store
                .insert_search_with_verification(&mut clash, &[0, 1, 2])
                .await
                .is_err()
        );
        assert_eq!(
            store.jobs_of_device(&dev).await.unwrap().len(),
            2,
            "orphan jobs left"
        );
        assert!(clash.candidates.iter().all(|c| c.job_id.is_none()));
        assert_eq!(store.search("search-a").await.unwrap(), Some(first));
    }
}

/// `verification` reads exactly the named jobs: their states, and the valid
/// verify measurements by job id; another search's job on the same device
/// is not read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_reads_only_the_named_jobs() {
    use nasflat_host::service::domain::JobState;
    for (store, _dir) in stores().await {
        let dev = device(&store).await;
        let mut a = verify_search("search-a", &dev);
        store
            .insert_search_with_verification(&mut a, &[0, 1])
            .await
            .unwrap();
        let mut b = verify_search("search-b", &dev);
        store
            .insert_search_with_verification(&mut b, &[0])
            .await
            .unwrap();
        let a_jobs: Vec<String> = a
            .candidates
            .iter()
            .filter_map(|c| c.job_id.clone())
            .collect();
        let b_job = b.candidates[0].job_id.clone().unwrap();
        // The agent leases all three (oldest first: a's two, then b's) and
        // measures a's first and b's.
        let leases = store.claim_jobs(&dev, 3, 60_000, None).await.unwrap();
        assert_eq!(leases.len(), 3);
        let lease_of = |job: &str| {
            leases
                .iter()
                .find(|g| g.job.id == job)
                .map(|g| g.lease_id.clone())
                .unwrap()
        };
        let results = vec![
            arch_result("m1", Some(&lease_of(&a_jobs[0])), 7, 9.5),
            arch_result("m2", Some(&lease_of(&b_job)), 7, 4.0),
        ];
        store.store_measurements(&dev, &results).await.unwrap();

        let v = store.verification(&a_jobs).await.unwrap();
        assert_eq!(v.states.len(), 2);
        assert_eq!(v.states[&a_jobs[0]], JobState::Done);
        assert_eq!(v.states[&a_jobs[1]], JobState::Leased);
        assert_eq!(v.measured_ms.len(), 1);
        assert_eq!(v.measured_ms[&a_jobs[0]], 9.5);
        assert!(!v.states.contains_key(&b_job) && !v.measured_ms.contains_key(&b_job));
        assert_eq!(store.verification(&[]).await.unwrap(), Default::default());
    }
}

/// A plan retried with its key gets the leases granted under that key back
/// (renewed), not new ones, on SQLite and on PostgreSQL (whose `substr`
/// takes no BIGINT length: a keyed plan there was a 500 until the length
/// was cast, found by `nasflat-loadgen` against two replicas).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_plan_replays_its_leases_on_every_backend() {
    for (store, _dir) in stores().await {
        let dev = device(&store).await;
        let jobs: Vec<NewJob> = (0..6)
            .map(|index| NewJob::Arch {
                space: SearchSpace::Nb201,
                index,
            })
            .collect();
        store
            .insert_jobs(&dev, Purpose::Sample, &jobs)
            .await
            .unwrap();
        let first = store
            .claim_jobs(&dev, 2, 60_000, Some("planKey0001"))
            .await
            .unwrap();
        assert_eq!(first.len(), 2);
        let again = store
            .claim_jobs(&dev, 2, 60_000, Some("planKey0001"))
            .await
            .unwrap();
        let ids = |g: &[nasflat_host::service::store::jobs::Granted]| {
            g.iter().map(|g| g.lease_id.clone()).collect::<Vec<_>>()
        };
        assert_eq!(ids(&again), ids(&first), "{:?}", store.backend());
        assert!(again.iter().all(|g| g.replayed));
        let other = store
            .claim_jobs(&dev, 2, 60_000, Some("planKey0002"))
            .await
            .unwrap();
        assert_eq!(other.len(), 2);
        assert!(
            other
                .iter()
                .all(|g| !g.replayed && !ids(&first).contains(&g.lease_id))
        );
    }
}

/// A registration stores the device and its sample jobs together (one
/// transaction, one commit): the jobs are there, queued, in the order given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrolled_device_comes_with_its_sample_jobs() {
    for (store, _dir) in stores().await {
        let id = new_id("dev");
        let jobs: Vec<NewJob> = [7usize, 3, 11]
            .into_iter()
            .map(|index| NewJob::Arch {
                space: SearchSpace::Nb201,
                index,
            })
            .collect();
        store
            .enrol_device(&id, "board", &format!("hash-{id}"), "{}", &jobs)
            .await
            .unwrap();
        assert_eq!(
            store.device_by_token(&format!("hash-{id}")).await.unwrap(),
            Some(id.clone())
        );
        let stored = store.jobs_of_device(&id).await.unwrap();
        let indices: Vec<usize> = stored
            .iter()
            .map(|j| match &j.subject {
                Subject::Arch { arch_index, .. } => *arch_index,
                Subject::Model { .. } => usize::MAX,
            })
            .collect();
        assert_eq!(indices, [7, 3, 11], "{:?}", store.backend());
        assert!(stored.iter().all(|j| j.purpose == Purpose::Sample));
        assert_eq!(store.queue_counts(Some(&id)).await.unwrap().queued, 3);
        // Enrolling the same id again fails and adds no job.
        assert!(
            store
                .enrol_device(&id, "again", "other-hash", "{}", &jobs)
                .await
                .is_err()
        );
        assert_eq!(store.jobs_of_device(&id).await.unwrap().len(), 3);
    }
}

/// Registrations that arrive while another commit is being written share
/// the next commit (group commit), each is still answered only after its
/// own device is stored, and one bad registration in a batch (an id taken)
/// fails alone. SQLite only: its write gate, held here, makes the storm
/// queue deterministically.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_storm_shares_commits_and_a_bad_one_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&sqlite_url(&dir.path().join("t.db")))
        .await
        .unwrap();
    let taken = new_id("dev");
    let job = |index| NewJob::Arch {
        space: SearchSpace::Nb201,
        index,
    };
    store
        .enrol_device(&taken, "first", "hash-first", "{}", &[job(1)])
        .await
        .unwrap();
    let before = store.registration_commits();
    let gate = store.write().await;
    let mut ids: Vec<String> = (0..40).map(|_| new_id("dev")).collect();
    ids.insert(17, taken.clone());
    let calls: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move {
                let jobs = [job(i), job(i + 100)];
                store
                    .enrol_device(&id, "storm", &format!("hash-{i}"), "{}", &jobs)
                    .await
            })
        })
        .collect();
    wait_until_queued(&store, ids.len()).await;
    // Nothing is answered before its commit.
    assert!(calls.iter().all(|c| !c.is_finished()));
    drop(gate);
    let mut outcomes = Vec::new();
    for c in calls {
        outcomes.push(c.await.unwrap());
    }
    for (i, (id, outcome)) in ids.iter().zip(&outcomes).enumerate() {
        if *id == taken {
            assert!(outcome.is_err(), "the taken id must fail");
            continue;
        }
        assert!(outcome.is_ok(), "registration {i}: {outcome:?}");
        assert_eq!(
            store.device_by_token(&format!("hash-{i}")).await.unwrap(),
            Some(id.clone())
        );
        assert_eq!(store.jobs_of_device(id).await.unwrap().len(), 2);
    }
    // The taken device keeps its one job, and is not renamed.
    assert_eq!(store.jobs_of_device(&taken).await.unwrap().len(), 1);
    assert_eq!(store.device(&taken).await.unwrap().unwrap().name, "first");
    // The good registrations took between 1 commit (the taken id alone in
    // the first batch, the 40 others together) and 40 (the taken id in a
    // batch that failed, its members then retried one by one): which one
    // depends on the order the spawned calls queued in. Never more than one
    // per good registration, and none for the failed one.
    let commits = store.registration_commits() - before;
    assert!((1..=40).contains(&commits), "{commits} commits");
    assert_eq!(store.registrations_waiting(), 0);
}

/// 60 registrations queued behind one writer are committed in at most two
/// transactions (the first committer may have taken the first arrival
/// alone), not 60.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_registrations_at_once_take_at_most_two_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&sqlite_url(&dir.path().join("t.db")))
        .await
        .unwrap();
    let gate = store.write().await;
    let calls: Vec<_> = (0..60)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = new_id("dev");
                let jobs = [NewJob::Arch {
                    space: SearchSpace::Nb201,
                    index: i,
                }];
                store
                    .enrol_device(&id, "storm", &format!("hash-{i}"), "{}", &jobs)
                    .await
                    .map(|()| id)
            })
        })
        .collect();
    wait_until_queued(&store, 60).await;
    drop(gate);
    for c in calls {
        let id = c.await.unwrap().unwrap();
        assert_eq!(store.jobs_of_device(&id).await.unwrap().len(), 1);
    }
    let commits = store.registration_commits();
    assert!((1..=2).contains(&commits), "{commits} commits for 60");
}

/// Waits (at most 30 s) until `n` registrations are queued or being written.
async fn wait_until_queued(store: &Store, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while store.registrations_waiting() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {n} registrations queued",
            store.registrations_waiting()
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
