//! `GET /?page=&per_page=`: the fleet, one page of devices at a time.
//!
//! The page refreshes itself and a fleet can hold thousands of devices, so
//! its cost must not grow with the fleet: the listed devices' counts come
//! from a few grouped queries ([`Store::device_overviews`]), their
//! predictors' held-out Spearman from [`QualityMemo`] (computed once per
//! predictor version and measurement count), and only the first
//! [`PLOTTED_PER_PAGE`] devices of the page load their measurements for
//! plots. The lease queue and the models are counted by the database too
//! (the fleet's done jobs once a minute, [`FleetTotals`]).

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Html;
use schemars::JsonSchema;
use serde::Deserialize;

use super::html::{describe, esc, fmt_time, opt, page, runtime_label, wire_name};
use super::plots::device_plots;
use crate::service::error::{AppError, Query};
use crate::service::fleet_totals::FleetTotals;
use crate::service::knowledge::{ModelState, Spaces};
use crate::service::predictions::PredictionCache;
use crate::service::quality::QualityMemo;
use crate::service::store::Store;
use crate::service::store::fleet::DeviceOverview;
use crate::service::store::measurements::MeasurementRow;

/// Devices a page lists unless `?per_page=` says otherwise.
pub const DEFAULT_PER_PAGE: usize = 50;
/// The most devices one page lists.
pub const MAX_PER_PAGE: usize = 500;
/// Devices of a page (the first ones with a predictor) whose plots it draws.
pub const PLOTTED_PER_PAGE: usize = 4;

/// The home page's query: which page of the device list.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct FleetPage {
    /// Page of the device list, from 1 (default 1); devices oldest first.
    pub page: Option<usize>,
    /// Devices per page (default 50, at most 500).
    pub per_page: Option<usize>,
}

impl FleetPage {
    /// (page from 1, devices per page), or a 400 naming the bad value.
    fn checked(&self) -> Result<(usize, usize), AppError> {
        let page = self.page.unwrap_or(1);
        let per_page = self.per_page.unwrap_or(DEFAULT_PER_PAGE);
        if page == 0 {
            return Err(AppError::BadRequest("page counts from 1".into()));
        }
        if !(1..=MAX_PER_PAGE).contains(&per_page) {
            return Err(AppError::BadRequest(format!(
                "per_page must be 1..={MAX_PER_PAGE}, got {per_page}"
            )));
        }
        Ok((page, per_page))
    }
}

/// `GET /`: the fleet.
pub async fn index(
    State(store): State<Store>,
    State(spaces): State<Spaces>,
    State(predictions): State<Arc<PredictionCache>>,
    State(qualities): State<Arc<QualityMemo>>,
    State(totals): State<Arc<FleetTotals>>,
    Query(query): Query<FleetPage>,
) -> Result<Html<String>, AppError> {
    let (page_no, per_page) = query.checked()?;
    let total = usize::try_from(store.device_count().await?).unwrap_or(0);
    let offset = (page_no - 1).saturating_mul(per_page);
    let devices = store.device_overviews(offset, per_page).await?;
    let mut b = String::from("<h1>nasflat host</h1>");
    spaces_line(&mut b, &spaces);
    b.push_str("<h2>Devices</h2>");
    let nav = pager(page_no, per_page, total, devices.len());
    b.push_str(&nav);
    b.push_str("<table id=\"devices\"><tr><th>device</th><th>name</th><th>runtime</th><th>samples</th><th>unsettled</th><th>queue (queued/leased/done)</th><th>transfer</th><th>predictor</th><th>held-out Spearman</th><th>last seen</th></tr>");
    let mut plots = Plots::default();
    for o in &devices {
        let cells = Listed {
            store: &store,
            spaces: &spaces,
            predictions: &predictions,
            qualities: &qualities,
        }
        .row(o, &mut plots)
        .await?;
        b.push_str(&cells);
    }
    if total == 0 {
        b.push_str("<tr><td colspan=\"9\" class=\"muted\">no agent registered yet: run <code>nasflat-agent run --host URL --token ENROL_TOKEN</code></td></tr>");
    } else if devices.is_empty() {
        b.push_str("<tr><td colspan=\"9\" class=\"muted\">no devices on this page</td></tr>");
    }
    b.push_str("</table>");
    if total > per_page {
        b.push_str(&nav);
    }
    if !plots.html.is_empty() {
        b.push_str("<h2>Predictors</h2>");
        b.push_str(&plots.html);
    }
    lease_queue(&mut b, &store, &totals).await?;
    models(&mut b, &store).await?;
    builtins(&mut b, &spaces);
    Ok(page("nasflat host", &b))
}

/// The served spaces and their predictors' state.
fn spaces_line(b: &mut String, spaces: &Spaces) {
    b.push_str("<p class=\"muted\">spaces: ");
    for (s, k) in spaces.iter() {
        let r = k.report();
        let state = wire_name(r.state);
        let detail = match (r.state, r.progress) {
            (ModelState::Pretraining, Some((d, t))) => format!("{state} {d}/{t} epochs"),
            _ => state,
        };
        let _ = write!(b, "<b>{s}</b> {} &nbsp; ", esc(&detail));
    }
    b.push_str("</p>");
}

/// A link to page `n` (`per_page` only when not the default).
fn page_href(n: usize, per_page: usize) -> String {
    if per_page == DEFAULT_PER_PAGE {
        format!("/?page={n}")
    } else {
        format!("/?page={n}&amp;per_page={per_page}")
    }
}

/// "devices 51-100 of 1000, page 2 of 20" with first / previous / next /
/// last links where they lead somewhere.
fn pager(page_no: usize, per_page: usize, total: usize, listed: usize) -> String {
    let pages = total.div_ceil(per_page).max(1);
    let first = (page_no - 1).saturating_mul(per_page);
    let mut nav = format!(
        "<p class=\"pager\">devices {}&#8211;{} of {total}, page {page_no} of {pages}",
        if listed == 0 { first } else { first + 1 },
        first + listed,
    );
    let link = |nav: &mut String, rel: &str, n: usize, text: &str| {
        let _ = write!(
            nav,
            " &middot; <a rel=\"{rel}\" href=\"{}\">{text}</a>",
            page_href(n, per_page)
        );
    };
    if page_no > 1 {
        link(&mut nav, "first", 1, "&laquo; first");
        link(
            &mut nav,
            "prev",
            (page_no - 1).min(pages),
            "&lsaquo; previous",
        );
    }
    if page_no < pages {
        link(&mut nav, "next", page_no + 1, "next &rsaquo;");
        link(&mut nav, "last", pages, "last &raquo;");
    }
    nav.push_str("</p>");
    nav
}

/// The page's plots: drawn for its first [`PLOTTED_PER_PAGE`] devices with
/// a predictor.
#[derive(Default)]
struct Plots {
    html: String,
    devices: usize,
}

/// What a device row reads.
struct Listed<'a> {
    store: &'a Store,
    spaces: &'a Spaces,
    predictions: &'a PredictionCache,
    qualities: &'a QualityMemo,
}

impl Listed<'_> {
    /// The device's table row; its plots go to `plots` while there is room.
    async fn row(&self, o: &DeviceOverview, plots: &mut Plots) -> Result<String, AppError> {
        let d = &o.device;
        let transfer = o.transfer.map_or_else(
            || "&#8211;".to_string(),
            |t| format!("{} {:.0}%", t.state, t.progress * 100.0),
        );
        let mut version = "&#8211;".to_string();
        let mut held = None;
        // Loaded only when the memo misses or the device is plotted.
        let mut measured: Option<Vec<MeasurementRow>> = None;
        let plot_device = plots.devices < PLOTTED_PER_PAGE;
        let mut plotted = false;
        for (space, stored_version) in &o.predictors {
            if !self.spaces.contains_key(space) {
                continue;
            }
            version = esc(stored_version);
            let memo = self
                .qualities
                .get(&d.id, *space, stored_version, o.measurements);
            if memo.is_some() && !plot_device {
                held = memo.and_then(|q| q.heldout_spearman);
                continue;
            }
            let Some(p) = self.predictions.get(&d.id, *space).await? else {
                continue;
            };
            if measured.is_none() {
                measured = Some(self.store.measurements_of_device(&d.id).await?);
            }
            let m = measured.as_deref().unwrap_or_default();
            version = esc(&p.version);
            held = match memo {
                Some(q) if p.version == *stored_version => q.heldout_spearman,
                _ => {
                    self.qualities
                        .compute(&d.id, *space, &p, m)
                        .heldout_spearman
                }
            };
            if plot_device {
                plotted = true;
                let _ = write!(
                    plots.html,
                    "<div class=\"device-plots\"><h3>{} ({space})</h3>{}</div>",
                    esc(&d.name),
                    device_plots(self.spaces, &d.id, *space, &p, m, None)
                );
            }
        }
        plots.devices += usize::from(plotted);
        Ok(format!(
            "<tr class=\"device\"><td><a href=\"/dashboard/devices/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td class=\"unsettled\">{}</td><td>{}/{}/{}</td><td>{transfer}</td><td><code>{version}</code></td><td>{}</td><td>{}</td></tr>",
            esc(&d.name),
            esc(&runtime_label(d)),
            o.measurements,
            o.unsettled,
            o.queue.queued,
            o.queue.leased + o.queue.expired,
            o.queue.done,
            opt(held),
            fmt_time(d.last_seen_ms),
            id = esc(&d.id),
        ))
    }
}

/// The fleet's queue counts and its oldest open jobs.
async fn lease_queue(b: &mut String, store: &Store, totals: &FleetTotals) -> Result<(), AppError> {
    let open = store.open_jobs(50).await?;
    let counts = totals.queue(store).await?;
    let _ = write!(
        b,
        "<h2>Lease queue</h2><p>{} queued, {} leased, {} expired (back in the queue), {} done, {} failed</p>\
         <table id=\"leases\"><tr><th>job</th><th>device</th><th>purpose</th><th>what</th><th>state</th><th>expires</th><th>attempts</th></tr>",
        counts.queued, counts.leased, counts.expired, counts.done, counts.failed
    );
    let now = crate::service::store::now_ms();
    for j in &open {
        let what = describe(&j.subject);
        let expires = j.lease_expires_ms.map_or_else(String::new, |e| {
            format!("{:.0} s", (e - now) as f64 / 1000.0)
        });
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{expires}</td><td>{}</td></tr>",
            esc(&j.id),
            esc(&j.device_id),
            j.purpose,
            esc(&what),
            j.state,
            j.attempts
        );
    }
    b.push_str("</table>");
    Ok(())
}

/// User models with their stored results.
async fn models(b: &mut String, store: &Store) -> Result<(), AppError> {
    b.push_str("<h2>User models</h2><table id=\"models\"><tr><th>model</th><th>name</th><th>size</th><th>results</th></tr>");
    let results = store.model_result_counts().await?;
    for m in store.models().await? {
        let _ = write!(
            b,
            "<tr><td><a href=\"/v1/models/{id}/results\">{id}</a></td><td>{}</td><td>{} B</td><td>{}</td></tr>",
            esc(&m.name),
            m.size_bytes,
            results.get(&m.id).copied().unwrap_or(0),
            id = esc(&m.id)
        );
    }
    b.push_str("</table>");
    Ok(())
}

/// The paper's source devices of each served space.
fn builtins(b: &mut String, spaces: &Spaces) {
    b.push_str("<h2>Built-in devices (paper source devices)</h2><details><summary>");
    let count: usize = spaces.values().map(|k| k.source_names().len()).sum();
    let _ = write!(b, "{count} devices</summary><p>");
    for (s, k) in spaces.iter() {
        for n in k.source_names() {
            let _ = write!(b, "<code>{s}:{}</code> ", esc(n));
        }
    }
    b.push_str("</p></details><p class=\"muted\">API: <a href=\"/v1/openapi.json\">/v1/openapi.json</a> &middot; <a href=\"/metrics\">/metrics</a> &middot; <a href=\"/healthz\">/healthz</a></p>");
}
