//! `GET /dashboard/devices/{id}`: one device, its predictors with their
//! plots, and its search view (`?budget_ms=&risk=`).

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Html;
use nasflat_shared::SearchSpace;
use schemars::JsonSchema;
use serde::Deserialize;

use super::html::{describe, esc, fmt_time, opt, page, runtime_label};
use super::plots::device_plots;
use crate::service::error::{AppError, Query};
use crate::service::knowledge::Spaces;
use crate::service::predictions::PredictionCache;
use crate::service::quality::quality;
use crate::service::search::{SearchRequest, SearchView, Searcher};
use crate::service::store::Store;
use crate::service::store::transfers::PredictionRow;

/// The device page's query: the budget (and risk) of its search view.
/// Without a budget the page shows the device's newest stored search, or a
/// search at the median predicted latency.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct SearchForm {
    /// Latency budget (ms).
    pub budget_ms: Option<f64>,
    /// Accepted chance of exceeding it (default 0.1).
    pub risk: Option<f64>,
}

/// The search the page shows for one space (see [`SearchForm`]).
async fn page_search(
    searcher: &Searcher,
    id: &str,
    space: SearchSpace,
    pred: &PredictionRow,
    form: &SearchForm,
    has_accuracy_plot: bool,
) -> Result<SearchView, AppError> {
    if form.budget_ms.is_none()
        && let Some(row) = searcher.latest(id, space).await?
    {
        return searcher.view(row).await;
    }
    let budget = form.budget_ms.unwrap_or_else(|| median(&pred.latencies));
    let req = SearchRequest {
        space: Some(space),
        max_latency_ms: budget,
        // The plot's accuracy, so the choice is the plot's best point left of the bound.
        objective: has_accuracy_plot.then(|| "cifar10".to_string()),
        risk: form.risk,
        verify: 0,
        probe: 0,
    };
    searcher.preview(id, &req).await
}

fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(1.0)
}

/// `GET /dashboard/devices/{id}?budget_ms=&risk=`: one device.
pub async fn device_page(
    State(store): State<Store>,
    State(spaces): State<Spaces>,
    State(predictions): State<Arc<PredictionCache>>,
    State(searcher): State<Searcher>,
    Path(id): Path<String>,
    Query(form): Query<SearchForm>,
) -> Result<Html<String>, AppError> {
    let d = store
        .device(&id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no agent device `{id}`")))?;
    let measured = store.measurements_of_device(&id).await?;
    let mut b = format!(
        "<p><a href=\"/\">&larr; fleet</a></p><h1>{} <span class=\"muted\">{}</span></h1><p id=\"runtime\">runtime <b>{}</b>: its latencies, and the predictor fitted on them, are this runtime's; the same board measured with another runtime is another device</p><h2>Fingerprint</h2><pre>{}</pre>",
        esc(&d.name),
        esc(&d.id),
        esc(&runtime_label(&d)),
        esc(
            &serde_json::from_str::<serde_json::Value>(&d.fingerprint_json)
                .and_then(|v| serde_json::to_string_pretty(&v))
                .unwrap_or_default()
        )
    );
    for space in spaces.keys() {
        if let Some(p) = predictions.get(&id, *space).await? {
            let plot = spaces.get(space).is_some_and(|k| k.accuracy.is_some());
            let search = page_search(&searcher, &id, *space, &p, &form, plot).await;
            let q = quality(&p, &measured, *space);
            let _ = write!(
                b,
                "<h2>Predictor ({space})</h2><p>version <code>{}</code>, initialised from {}; Spearman on {} fit samples {}, on {} held-out samples {} (MAPE {})</p>{}",
                esc(&p.version),
                esc(p.init_from.as_deref().unwrap_or("the mean row")),
                q.fit_samples,
                opt(q.fit_spearman),
                q.heldout_samples,
                opt(q.heldout_spearman),
                q.heldout_mape
                    .map_or_else(|| "&#8211;".into(), |m| format!("{:.1}%", m * 100.0)),
                device_plots(&spaces, &id, *space, &p, &measured, search.as_ref().ok())
            );
            match &search {
                Ok(v) => b.push_str(&search_section(&id, *space, &form, v)),
                Err(e) => {
                    let _ = write!(
                        b,
                        "<h3>Search ({space})</h3><p class=\"error\" id=\"search-error\">{}</p>",
                        esc(&e.to_string())
                    );
                }
            }
        }
    }
    b.push_str("<h2>Transfers</h2><table><tr><th>id</th><th>space</th><th>state</th><th>progress</th><th>samples</th><th>message</th></tr>");
    for t in store.transfers(&id).await? {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.0}%</td><td>{}</td><td>{}</td></tr>",
            esc(&t.id),
            t.space,
            t.state,
            t.progress * 100.0,
            t.samples,
            esc(&t.message)
        );
    }
    let _ = write!(
        b,
        "</table><h2>Samples</h2><p id=\"unsettled\">{} of {} samples did not settle (measured on a busy or drifting machine): they are kept here, never used for a transfer, and their jobs are measured again</p><table id=\"samples\"><tr><th>key</th><th>purpose</th><th>what</th><th>label ms</th><th>valid</th><th>settled</th><th>received</th></tr>",
        measured.iter().filter(|m| m.settled == Some(false)).count(),
        measured.len()
    );
    for m in measured.iter().rev() {
        let what = describe(&m.subject);
        let _ = write!(
            b,
            "<tr><td><a href=\"/v1/devices/{id}/samples/{k}\">{k}</a></td><td>{}</td><td>{}</td><td>{:.3}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            m.purpose,
            esc(&what),
            m.median_ms,
            if m.valid {
                "yes".to_string()
            } else {
                esc(&m.invalid_reasons.join("; "))
            },
            match m.settled {
                Some(true) => "yes",
                Some(false) => "<b>no</b>",
                None => "&#8211;",
            },
            fmt_time(m.received_ms),
            id = esc(&id),
            k = esc(&m.key)
        );
    }
    b.push_str("</table>");
    Ok(page(&format!("nasflat: {}", d.name), &b))
}

/// The search view's text: the form, the chosen architecture with its
/// bound, and every candidate with its measurement.
fn search_section(id: &str, space: SearchSpace, form: &SearchForm, v: &SearchView) -> String {
    let mut b = format!(
        "<h3>Search ({space})</h3><form method=\"get\" action=\"/dashboard/devices/{id}\">\
         budget <input name=\"budget_ms\" type=\"number\" step=\"any\" min=\"0\" value=\"{:.3}\"> ms, \
         risk <input name=\"risk\" type=\"number\" step=\"any\" min=\"0\" max=\"1\" value=\"{}\"> \
         <button type=\"submit\">search</button></form>\
         <p id=\"chosen\">{}: <code>{}</code> (#{}), predicted {:.3} ms, upper bound {:.3} ms at risk {} (budget {:.3} ms); {} {:.2}{}</p>",
        v.max_latency_ms,
        form.risk.unwrap_or(v.risk),
        if v.verify_queued > 0 {
            "searched"
        } else {
            "chosen"
        },
        esc(&v.chosen.arch),
        v.chosen.index,
        v.chosen.predicted_ms,
        v.chosen.upper_ms,
        v.risk,
        v.max_latency_ms,
        esc(&v.objective),
        v.chosen.objective,
        if v.objective_is_accuracy {
            "%"
        } else {
            " (proxy)"
        },
        id = esc(id),
    );
    if let Some(f) = &v.best_within_budget {
        let _ = write!(
            b,
            "<p id=\"verified\">best candidate measured within the budget: rank {} <code>{}</code>, measured {:.3} ms</p>",
            f.rank,
            esc(&f.arch),
            f.measured_ms.unwrap_or(f64::NAN)
        );
    }
    b.push_str("<table id=\"candidates\"><tr><th>rank</th><th>arch</th><th>objective</th><th>predicted ms</th><th>upper ms</th><th>measured ms</th><th>within budget</th><th>job</th></tr>");
    for c in &v.candidates {
        let _ = write!(
            b,
            "<tr><td>{}</td><td><code>{}</code></td><td>{:.2}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            c.rank,
            esc(&c.arch),
            c.objective,
            c.predicted_ms,
            c.upper_ms,
            opt(c.measured_ms),
            c.within_budget
                .map_or("&#8211;", |w| if w { "yes" } else { "no" }),
            esc(&c.job_state.map(|s| s.to_string()).unwrap_or_default()),
        );
    }
    b.push_str("</table>");
    b
}
