//! Latency-constrained search on one device (`POST /v1/devices/{id}/search`):
//! which architecture to deploy under a budget, answered with the library's
//! exhaustive risk-aware search (`nasflat_predictor::nas`) over the device's
//! served predictions, or over a built-in device's measured table.
//!
//! An agent device's search ranks with the predictions its transfer stored
//! and bounds them with the residuals the same transfer stored
//! (`prediction_residuals`), so a search costs a scan of the space, not a
//! GNN pass. With `verify: n` the top n candidates become measurement jobs
//! (purpose [`Purpose::Verify`]) for the device's agent; a search's view reads
//! their measurements back by job id, so it shows measured next to
//! predicted latency as soon as the agent uploads them.

use std::sync::Arc;

use axum::extract::FromRef;
use nasflat_predictor::Samples;
use nasflat_predictor::nas::probe::{ProbePlan, ProbeSearch, next_probes};
use nasflat_predictor::nas::{
    self, BoundOptions, Candidate, Constraint, LatencyModel, Mode, Objective, Problem,
    RANKED_LIMIT, SearchOutcome, TableLatency,
};
use nasflat_predictor::{PredictorError, Result as PredictorResult};
use nasflat_shared::{Arch, SearchSpace};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::api::devices::{builtin, space_of};
use super::domain::{JobState, Trigger};
use super::error::AppError;
use super::knowledge::{SpaceKnowledge, Spaces};
use super::predictions::PredictionCache;
use super::store::searches::{SearchRow, SearchSource, StoredCandidate, Verification};
use super::store::transfers::PredictionRow;
use super::store::{Store, new_id, now_ms};
use super::transfer::{SampleSet, TransferRunner, samples_of};

/// Risk of exceeding the budget when the request names none.
pub const DEFAULT_RISK: f64 = 0.1;

/// `POST /v1/devices/{id}/search` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct SearchRequest {
    /// Space (default: the first served).
    #[serde(default)]
    pub space: Option<SearchSpace>,
    /// The latency budget (ms), > 0.
    pub max_latency_ms: f64,
    /// What to maximise: `cifar10`, `cifar100`, `imagenet16_120` (NB201
    /// accuracies) or the proxies `flops`, `params`, `synflow` (FBNet).
    /// Default: `cifar100` on NB201, `flops` on FBNet.
    #[serde(default)]
    pub objective: Option<String>,
    /// Accepted chance of exceeding the budget, in (0, 1) (default 0.1).
    #[serde(default)]
    pub risk: Option<f64>,
    /// Queue the top n candidates as measurement jobs for the device's
    /// agent (0..=the number of candidates returned; agent devices only).
    #[serde(default)]
    pub verify: usize,
    /// Also queue measurement jobs for the n architectures *beyond* the
    /// bound most likely to beat the answer (expected improvement over its
    /// objective, the chance read from the predictor's residuals; 0..=10,
    /// agent devices only). Nothing the device has measured is probed
    /// again, and a probe must beat the best of it within the budget. They
    /// are listed after the ranked candidates with `beyond_bound: true`;
    /// once measured, the answer to deploy is `best_within_budget`.
    #[serde(default)]
    pub probe: usize,
}

/// One candidate of a search, with its measurement once the agent made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CandidateView {
    /// Rank (0 = the chosen architecture).
    pub rank: usize,
    /// Table row.
    pub index: usize,
    /// Architecture string.
    pub arch: String,
    /// Predicted latency (ms).
    pub predicted_ms: f64,
    /// Upper bound at the search's risk (ms).
    pub upper_ms: f64,
    /// Objective value (accuracy % or the named proxy).
    pub objective: f64,
    /// Verification job, if queued.
    pub job_id: Option<String>,
    /// That job's state (`queued`, `leased`, `done`, `failed`).
    pub job_state: Option<JobState>,
    /// Latency the agent measured (valid measurements only).
    pub measured_ms: Option<f64>,
    /// Whether the measured latency is within the budget.
    pub within_budget: Option<bool>,
    /// A probe: its bound exceeds the budget, it was queued because it may
    /// beat the answer (`probe` in the request).
    pub beyond_bound: bool,
}

/// A search and, once measured, its verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SearchView {
    /// Search id (`GET /v1/searches/{id}`).
    pub id: String,
    /// Device.
    pub device_id: String,
    /// Space.
    pub space: SearchSpace,
    /// Objective name.
    pub objective: String,
    /// Whether the objective is a measured accuracy (else a stated proxy).
    pub objective_is_accuracy: bool,
    /// The budget (ms).
    pub max_latency_ms: f64,
    /// Accepted chance of exceeding it.
    pub risk: f64,
    /// Predictor (or table) version that answered.
    pub predictor_version: String,
    /// `transfer` (an agent's predictor) or `table` (a built-in device).
    pub source: SearchSource,
    /// Log-ms factor of the bound: `upper = predicted * exp(this)`.
    pub residual_quantile: f64,
    /// Creation, epoch ms.
    pub created_ms: i64,
    /// The architecture to deploy by the bound (the first candidate).
    pub chosen: CandidateView,
    /// Every candidate: the bounded ones best objective first, then the
    /// probes (`beyond_bound`).
    pub candidates: Vec<CandidateView>,
    /// Verification jobs queued.
    pub verify_queued: usize,
    /// Verification jobs measured (valid).
    pub verify_measured: usize,
    /// The most accurate candidate (probes included) whose measured
    /// latency meets the budget: the answer once measured, with no risk
    /// left. Among the bounded candidates alone, the best-ranked one.
    pub best_within_budget: Option<CandidateView>,
}

/// What searching reads and writes: the served spaces (and the built-in
/// tables), the store and the served predictions.
#[derive(Clone)]
pub struct Searcher {
    spaces: Spaces,
    store: Store,
    predictions: Arc<PredictionCache>,
    /// Re-runs the transfer of a predictor stored without residuals.
    transfers: TransferRunner,
}

impl<S> FromRef<S> for Searcher
where
    Spaces: FromRef<S>,
    Store: FromRef<S>,
    Arc<PredictionCache>: FromRef<S>,
    TransferRunner: FromRef<S>,
{
    fn from_ref(state: &S) -> Searcher {
        Searcher {
            spaces: Spaces::from_ref(state),
            store: Store::from_ref(state),
            predictions: Arc::<PredictionCache>::from_ref(state),
            transfers: TransferRunner::from_ref(state),
        }
    }
}

/// Whether a search may start a transfer to recompute a predictor's
/// missing residuals: a stored search (`POST`, admin) may, a preview (the
/// dashboard's `GET`) only says how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backfill {
    Start,
    Explain,
}

/// A served predictor's latencies with the residuals of its transfer.
struct Served {
    prediction: Arc<PredictionRow>,
    residuals: Vec<f64>,
}

impl LatencyModel for Served {
    fn predict(&self, rows: &[usize]) -> PredictorResult<Vec<f64>> {
        rows.iter()
            .map(|&r| {
                self.prediction.latencies.get(r).copied().ok_or_else(|| {
                    PredictorError::internal(
                        "served predictions",
                        format!("row {r} of {} stored", self.prediction.latencies.len()),
                    )
                })
            })
            .collect()
    }

    fn loo_log_residuals(&self) -> PredictorResult<Vec<f64>> {
        Ok(self.residuals.clone())
    }
}

/// Where a search's latencies come from.
enum Latencies {
    Served(Served),
    Table { device: String },
}

/// A checked request.
struct Question {
    space: SearchSpace,
    objective: Objective,
    constraint: Constraint,
    verify: usize,
    probe: usize,
}

/// NB201's default is the paper's Table 8 objective; FBNet has only proxies.
fn default_objective(space: SearchSpace) -> Objective {
    match space {
        SearchSpace::Nb201 => Objective::Cifar100,
        SearchSpace::Fbnet => Objective::Flops,
    }
}

impl Searcher {
    fn question(&self, req: &SearchRequest) -> Result<Question, AppError> {
        let space = space_of(&self.spaces, req.space)?;
        let objective = match &req.objective {
            Some(o) => o.parse::<Objective>()?,
            None => default_objective(space),
        };
        let constraint = Constraint::new(req.max_latency_ms, req.risk.unwrap_or(DEFAULT_RISK))?;
        Ok(Question {
            space,
            objective,
            constraint,
            verify: req.verify,
            probe: req.probe,
        })
    }

    /// The latencies of `device_id` in `space`: a built-in table, or the
    /// agent's served predictor and its residuals.
    async fn latencies(
        &self,
        device_id: &str,
        space: SearchSpace,
        backfill: Backfill,
    ) -> Result<(Latencies, String, SearchSource), AppError> {
        if let Some((k, _)) = builtin(&self.spaces, device_id) {
            if k.space != space {
                return Err(AppError::BadRequest(format!(
                    "built-in device `{device_id}` belongs to {}",
                    k.space
                )));
            }
            let version = format!("{space}-table");
            let device = device_id
                .split_once(':')
                .map(|(_, name)| name.to_string())
                .unwrap_or_default();
            return Ok((Latencies::Table { device }, version, SearchSource::Table));
        }
        if self.store.device(device_id).await?.is_none() {
            return Err(AppError::NotFound(format!("no device `{device_id}`")));
        }
        let Some(prediction) = self.predictions.get(device_id, space).await? else {
            return Err(AppError::Conflict(format!(
                "device `{device_id}` has no finished {space} transfer yet: search needs its predictor"
            )));
        };
        let Some(residuals) = self
            .store
            .residuals(device_id, space, &prediction.version)
            .await?
        else {
            return Err(self
                .without_residuals(device_id, space, &prediction.version, backfill)
                .await);
        };
        let version = prediction.version.clone();
        let served = Served {
            prediction,
            residuals,
        };
        Ok((Latencies::Served(served), version, SearchSource::Transfer))
    }

    /// The 409 of a predictor stored without residuals (a transfer finished
    /// before migration 0002): its bound cannot be computed from what is
    /// stored, since the residuals leave each sample out of the fitted
    /// pipeline, so the transfer must run again. With [`Backfill::Start`]
    /// that transfer is started here and the error names it.
    async fn without_residuals(
        &self,
        device_id: &str,
        space: SearchSpace,
        version: &str,
        backfill: Backfill,
    ) -> AppError {
        let why = format!(
            "the {space} predictor of `{device_id}` (version {version}) was stored before risk bounds \
             existed and has no leave-one-out residuals to bound its predictions with"
        );
        if backfill == Backfill::Explain {
            return AppError::Conflict(format!(
                "{why}; POST /v1/devices/{device_id}/transfer (or POST a search) re-runs its transfer, which stores them"
            ));
        }
        match self
            .transfers
            .start(device_id, space, SampleSet::Plan, Trigger::Manual)
            .await
        {
            Ok(id) => AppError::Conflict(format!(
                "{why}; transfer `{id}` was started to recompute them: search again once GET /v1/transfers/{id} is done"
            )),
            Err(AppError::Conflict(running)) => {
                AppError::Conflict(format!("{why}; {running}: search again once it is done"))
            }
            Err(e) => e,
        }
    }

    /// The answer to `q` on `device_id`, not stored and without jobs.
    async fn searched(
        &self,
        device_id: &str,
        q: &Question,
        backfill: Backfill,
    ) -> Result<SearchRow, AppError> {
        let (latencies, version, source) = self.latencies(device_id, q.space, backfill).await?;
        if (q.verify > 0 || q.probe > 0) && source == SearchSource::Table {
            return Err(AppError::Invalid(format!(
                "`{device_id}` is a built-in device: its latencies are measured already, there is no agent to verify on"
            )));
        }
        if q.probe > RANKED_LIMIT {
            return Err(AppError::Invalid(format!(
                "probe {}: at most {RANKED_LIMIT} architectures beyond the bound",
                q.probe
            )));
        }
        let k = self.spaces.served(q.space)?.clone();
        let measured = if q.probe > 0 {
            let rows = self.store.measurements_of_device(device_id).await?;
            samples_of(&rows, q.space, SampleSet::All)
        } else {
            Samples::default()
        };
        let (objective, constraint) = (q.objective, q.constraint);
        let probe = Probe {
            count: q.probe,
            measured,
        };
        let (outcome, probes) = tokio::task::spawn_blocking(move || {
            answer(&k, &latencies, objective, &constraint, &probe)
        })
        .await
        .map_err(|e| AppError::Internal(format!("search crashed: {e}")))??;
        Ok(SearchRow {
            id: new_id("search"),
            device_id: device_id.to_string(),
            space: q.space,
            objective: q.objective,
            max_latency_ms: q.constraint.max_ms(),
            risk: q.constraint.risk(),
            predictor_version: version,
            source,
            residual_quantile: outcome.residual_quantile,
            candidates: outcome
                .ranked
                .iter()
                .chain(&probes)
                .map(|c| StoredCandidate {
                    index: c.row,
                    predicted_ms: c.predicted_ms,
                    upper_ms: c.upper_ms,
                    objective: c.objective,
                    job_id: None,
                })
                .collect(),
            created_ms: now_ms(),
        })
    }

    /// A search answered but neither stored nor verified (the dashboard's
    /// budget form).
    pub async fn preview(
        &self,
        device_id: &str,
        req: &SearchRequest,
    ) -> Result<SearchView, AppError> {
        let q = self.question(req)?;
        let row = self.searched(device_id, &q, Backfill::Explain).await?;
        view_of(row, &Verification::default())
    }

    /// Runs a search for `device_id`, queues its verification jobs and
    /// stores it (jobs and search in one transaction).
    pub async fn run(&self, device_id: &str, req: &SearchRequest) -> Result<SearchRow, AppError> {
        let q = self.question(req)?;
        let mut row = self.searched(device_id, &q, Backfill::Start).await?;
        let ranked = row.candidates.len() - row.probes();
        if q.verify > ranked {
            return Err(AppError::Invalid(format!(
                "verify {} but the search has {ranked} candidates (at most {RANKED_LIMIT})",
                q.verify,
            )));
        }
        let queued: Vec<usize> = (0..q.verify).chain(ranked..row.candidates.len()).collect();
        self.store
            .insert_search_with_verification(&mut row, &queued)
            .await?;
        Ok(row)
    }

    /// A stored search by id.
    pub async fn get(&self, id: &str) -> Result<SearchRow, AppError> {
        self.store
            .search(id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no search `{id}`")))
    }

    /// The newest stored search of a device in a space.
    pub async fn latest(
        &self,
        device_id: &str,
        space: SearchSpace,
    ) -> Result<Option<SearchRow>, AppError> {
        Ok(self.store.latest_search(device_id, space).await?)
    }

    /// A search with its verification jobs' states and measurements (read
    /// by the search's own job ids).
    pub async fn view(&self, row: SearchRow) -> Result<SearchView, AppError> {
        let jobs: Vec<String> = row
            .candidates
            .iter()
            .filter_map(|c| c.job_id.clone())
            .collect();
        let verification = self.store.verification(&jobs).await?;
        view_of(row, &verification)
    }
}

/// What a search asks to probe: how many architectures beyond the bound,
/// and the device's settled measurements in the space (never probed again;
/// the best of them within the budget is the bar a probe must beat).
struct Probe {
    count: usize,
    measured: Samples,
}

/// The exhaustive risk-aware search of `k`'s space (blocking: scores the
/// objective and scans every architecture), and `probe.count` architectures
/// beyond its bound worth measuring (served predictors only).
fn answer(
    k: &SpaceKnowledge,
    latencies: &Latencies,
    objective: Objective,
    constraint: &Constraint,
    probe: &Probe,
) -> Result<(SearchOutcome, Vec<Candidate>), AppError> {
    let scores = objective.scores(&k.data)?;
    let problem = Problem {
        objective: &scores,
        candidates: &[],
    };
    match latencies {
        Latencies::Served(served) => {
            let outcome = nas::search(served, &problem, constraint, Mode::Exhaustive)?;
            let search = ProbeSearch {
                problem: &problem,
                constraint,
                options: &BoundOptions::PLAIN,
                plan: ProbePlan {
                    probes: probe.count,
                    rounds: 1,
                    verify: false,
                },
            };
            let probes = if probe.count == 0 {
                Vec::new()
            } else {
                next_probes(served, &search, &probe.measured)?
            };
            Ok((outcome, probes))
        }
        Latencies::Table { device } => {
            let table = TableLatency::new(&k.data, device)?;
            let outcome = nas::search(&table, &problem, constraint, Mode::Exhaustive)?;
            Ok((outcome, Vec::new()))
        }
    }
}

/// Joins a stored search with its jobs' states and measurements.
fn view_of(row: SearchRow, verification: &Verification) -> Result<SearchView, AppError> {
    let (states, measured) = (&verification.states, &verification.measured_ms);
    let space = row.space;
    let budget = row.max_latency_ms;
    let candidates: Vec<CandidateView> = row
        .candidates
        .iter()
        .enumerate()
        .map(|(rank, c)| {
            let measured_ms = c.job_id.as_ref().and_then(|j| measured.get(j).copied());
            CandidateView {
                rank,
                index: c.index,
                arch: Arch::from_index(space, c.index)
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                predicted_ms: c.predicted_ms,
                upper_ms: c.upper_ms,
                objective: c.objective,
                job_id: c.job_id.clone(),
                job_state: c.job_id.as_ref().and_then(|j| states.get(j).copied()),
                measured_ms,
                within_budget: measured_ms.map(|ms| ms <= budget),
                beyond_bound: c.upper_ms > budget,
            }
        })
        .collect();
    let chosen = candidates.first().cloned().ok_or_else(|| {
        AppError::Internal(format!("stored search `{}` has no candidate", row.id))
    })?;
    let objective_is_accuracy = row.objective.is_accuracy();
    Ok(SearchView {
        best_within_budget: candidates
            .iter()
            .filter(|c| c.within_budget == Some(true))
            // Ties keep the better-ranked candidate.
            .reduce(|best, c| {
                if c.objective > best.objective {
                    c
                } else {
                    best
                }
            })
            .cloned(),
        verify_queued: candidates.iter().filter(|c| c.job_id.is_some()).count(),
        verify_measured: candidates
            .iter()
            .filter(|c| c.measured_ms.is_some())
            .count(),
        chosen,
        candidates,
        objective_is_accuracy,
        id: row.id,
        device_id: row.device_id,
        space: row.space,
        objective: row.objective.to_string(),
        max_latency_ms: budget,
        risk: row.risk,
        predictor_version: row.predictor_version,
        source: row.source,
        residual_quantile: row.residual_quantile,
        created_ms: row.created_ms,
    })
}
