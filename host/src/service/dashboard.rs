//! The dashboard: server-rendered HTML with inline SVG plots and inline CSS,
//! no scripts and no external resources, so it works offline and in any
//! browser. Devices, samples, the lease queue, predictor quality, a
//! predicted-vs-measured scatter and a latency-accuracy Pareto plot per device,
//! which is also the device's search view: a budget form, the constraint
//! line, the chosen architecture with its bound, and the verified
//! candidates' measured latencies beside their predictions.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Html;
use nasflat_shared::SearchSpace;
use schemars::JsonSchema;
use serde::Deserialize;

use super::api::devices::quality;
use super::domain::Subject;
use super::error::{AppError, Query};
use super::knowledge::ModelState;
use super::knowledge::Spaces;
use super::predictions::PredictionCache;
use super::search::{SearchRequest, SearchView, Searcher};
use super::store::Store;
use super::store::measurements::MeasurementRow;
use super::store::transfers::PredictionRow;
use super::transfer::{SampleSet, samples_of};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;font-size:.9em}\
th{background:#f0f0f0}h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.5em}.plots{display:flex;flex-wrap:wrap;gap:1em}\
svg{background:#fafafa;border:1px solid #ddd}.muted{color:#777}code{background:#f4f4f4;padding:0 .2em}";

/// A value's name as the JSON API spells it (one spelling for states the
/// store does not keep).
fn wire_name(value: impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A job's or measurement's subject, for a table cell.
fn describe(subject: &Subject) -> String {
    match subject {
        Subject::Arch { space, arch_index } => format!("{space} #{arch_index}"),
        Subject::Model { model_id } => format!("model {model_id}"),
    }
}

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"15\">\
         <title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        esc(title)
    ))
}

fn fmt_time(ms: i64) -> String {
    let secs = (super::store::now_ms() - ms) / 1000;
    match secs {
        s if s < 60 => format!("{s} s ago"),
        s if s < 3600 => format!("{} min ago", s / 60),
        s => format!("{} h ago", s / 3600),
    }
}

/// A linear or log axis mapping data to pixels.
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    px0: f64,
    px1: f64,
}

impl Axis {
    fn new(values: impl Iterator<Item = f64>, log: bool, px0: f64, px1: f64) -> Axis {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values.filter(|v| v.is_finite() && (!log || *v > 0.0)) {
            let v = if log { v.ln() } else { v };
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if !lo.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        let pad = ((hi - lo) * 0.05).max(1e-6);
        Axis {
            lo: lo - pad,
            hi: hi + pad,
            log,
            px0,
            px1,
        }
    }

    fn px(&self, v: f64) -> f64 {
        let v = if self.log { v.max(1e-12).ln() } else { v };
        self.px0 + (v - self.lo) / (self.hi - self.lo) * (self.px1 - self.px0)
    }

    fn label(&self, t: f64) -> f64 {
        let v = self.lo + t * (self.hi - self.lo);
        if self.log { v.exp() } else { v }
    }
}

const W: f64 = 420.0;
const H: f64 = 320.0;
const L: f64 = 55.0;
const B: f64 = 40.0;

fn frame(out: &mut String, id: &str, title: &str, x: &Axis, y: &Axis, xl: &str, yl: &str) {
    let _ = write!(
        out,
        "<svg id=\"{id}\" class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\">\
         <title>{t}</title><text x=\"{cx}\" y=\"16\" text-anchor=\"middle\" font-size=\"13\">{t}</text>\
         <line x1=\"{L}\" y1=\"{yb}\" x2=\"{xr}\" y2=\"{yb}\" stroke=\"#555\"/><line x1=\"{L}\" y1=\"25\" x2=\"{L}\" y2=\"{yb}\" stroke=\"#555\"/>\
         <text x=\"{cx}\" y=\"{xly}\" text-anchor=\"middle\" font-size=\"11\">{xl}</text>\
         <text x=\"12\" y=\"{cy}\" font-size=\"11\" transform=\"rotate(-90 12 {cy})\" text-anchor=\"middle\">{yl}</text>",
        t = esc(title),
        cx = (L + W - 10.0) / 2.0,
        cy = (25.0 + H - B) / 2.0,
        yb = H - B,
        xr = W - 10.0,
        xly = H - 8.0,
    );
    for i in 0..=4 {
        let t = f64::from(i) / 4.0;
        let (xv, yv) = (x.label(t), y.label(t));
        let (xp, yp) = (x.px(xv), y.px(yv));
        let _ = write!(
            out,
            "<text x=\"{xp:.1}\" y=\"{:.1}\" font-size=\"9\" text-anchor=\"middle\">{}</text>\
             <text x=\"{:.1}\" y=\"{yp:.1}\" font-size=\"9\" text-anchor=\"end\">{}</text>",
            H - B + 12.0,
            short(xv),
            L - 4.0,
            short(yv)
        );
    }
}

fn short(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Predicted vs measured latency (log-log), fit samples and held-out ones.
pub fn scatter_svg(id: &str, points: &[(f64, f64, bool)]) -> String {
    let all = || points.iter().flat_map(|p| [p.0, p.1]);
    let x = Axis::new(all(), true, L, W - 10.0);
    let y = Axis::new(all(), true, H - B, 25.0);
    let mut out = String::new();
    frame(
        &mut out,
        id,
        "predicted vs measured (ms)",
        &x,
        &y,
        "measured ms",
        "predicted ms",
    );
    let (lo, hi) = (x.label(0.0), x.label(1.0));
    let _ = write!(
        out,
        "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#aaa\" stroke-dasharray=\"4\"/>",
        x.px(lo),
        y.px(lo),
        x.px(hi),
        y.px(hi)
    );
    for (measured, predicted, fit) in points {
        let color = if *fit { "#1f77b4" } else { "#d62728" };
        let _ = write!(
            out,
            "<circle class=\"pt\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\" fill-opacity=\"0.75\"/>",
            x.px(*measured),
            y.px(*predicted)
        );
    }
    let _ = write!(
        out,
        "<text x=\"{}\" y=\"36\" font-size=\"10\" fill=\"#1f77b4\">&#9679; fit samples</text>\
         <text x=\"{}\" y=\"50\" font-size=\"10\" fill=\"#d62728\">&#9679; held out</text></svg>",
        L + 8.0,
        L + 8.0
    );
    out
}

/// Pareto front (lowest latency for a given accuracy) of `(latency, accuracy)`.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut sorted: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(l, a)| l.is_finite() && a.is_finite())
        .collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    let mut front = Vec::new();
    let mut best = f64::NEG_INFINITY;
    for p in sorted {
        if p.1 > best {
            best = p.1;
            front.push(p);
        }
    }
    front
}

/// A search drawn on the Pareto plot: the budget, the chosen architecture
/// from its prediction to its upper bound, and each verified candidate from
/// its prediction to what the agent measured (all at the plot's accuracy).
#[derive(Debug, Clone, Default)]
pub struct SearchOverlay {
    /// The budget (ms): a vertical line.
    pub budget_ms: f64,
    /// The chosen architecture: (predicted ms, upper ms, accuracy).
    pub chosen: Option<(f64, f64, f64)>,
    /// Verified candidates: (predicted ms, measured ms, accuracy).
    pub verified: Vec<(f64, f64, f64)>,
}

/// Predicted latency vs accuracy over the space, with the Pareto front and,
/// when given, a search's budget, choice and verification.
pub fn pareto_svg(
    id: &str,
    points: &[(f64, f64)],
    measured: &[(f64, f64)],
    search: Option<&SearchOverlay>,
) -> String {
    let front = pareto_front(points);
    let x = Axis::new(points.iter().map(|p| p.0), true, L, W - 10.0);
    let y = Axis::new(points.iter().map(|p| p.1), false, H - B, 25.0);
    let mut out = String::new();
    frame(
        &mut out,
        id,
        "latency-accuracy Pareto (predicted)",
        &x,
        &y,
        "predicted ms",
        "CIFAR-10 accuracy %",
    );
    let step = (points.len() / 1500).max(1);
    for p in points.iter().step_by(step) {
        let _ = write!(
            out,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.3\" fill=\"#999\" fill-opacity=\"0.4\"/>",
            x.px(p.0),
            y.px(p.1)
        );
    }
    let path: Vec<String> = front
        .iter()
        .map(|p| format!("{:.1},{:.1}", x.px(p.0), y.px(p.1)))
        .collect();
    let _ = write!(
        out,
        "<polyline class=\"front\" points=\"{}\" fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\"/>",
        path.join(" ")
    );
    for p in measured {
        let _ = write!(
            out,
            "<circle class=\"pt\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#1f77b4\"/>",
            x.px(p.0),
            y.px(p.1)
        );
    }
    if let Some(search) = search {
        draw_search(&mut out, &x, &y, search);
    }
    let _ = write!(
        out,
        "<text x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"#d62728\">&#8212; Pareto front ({} archs)</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"#1f77b4\">&#9679; measured</text></svg>",
        L + 8.0,
        H - B - 20.0,
        front.len(),
        L + 8.0,
        H - B - 6.0
    );
    out
}

/// The budget line, the chosen architecture's bound and the verified
/// candidates' measurements (green within the budget, red over it).
fn draw_search(out: &mut String, x: &Axis, y: &Axis, s: &SearchOverlay) {
    let bx = x.px(s.budget_ms).clamp(L, W - 10.0);
    let _ = write!(
        out,
        "<line class=\"budget\" x1=\"{bx:.1}\" y1=\"25\" x2=\"{bx:.1}\" y2=\"{yb}\" stroke=\"#2ca02c\" stroke-width=\"1.5\" stroke-dasharray=\"5 3\"/>\
         <text x=\"{tx:.1}\" y=\"34\" font-size=\"10\" fill=\"#2ca02c\">budget {} ms</text>",
        short(s.budget_ms),
        yb = H - B,
        tx = bx + 3.0,
    );
    if let Some((p, u, a)) = s.chosen {
        let _ = write!(
            out,
            "<line class=\"bound\" x1=\"{:.1}\" y1=\"{ya:.1}\" x2=\"{:.1}\" y2=\"{ya:.1}\" stroke=\"#ff7f0e\" stroke-width=\"2\"/>\
             <circle class=\"chosen\" cx=\"{:.1}\" cy=\"{ya:.1}\" r=\"5\" fill=\"none\" stroke=\"#ff7f0e\" stroke-width=\"2\"/>",
            x.px(p),
            x.px(u),
            x.px(p),
            ya = y.px(a),
        );
    }
    for &(p, m, a) in &s.verified {
        let colour = if m <= s.budget_ms {
            "#2ca02c"
        } else {
            "#d62728"
        };
        let _ = write!(
            out,
            "<line x1=\"{:.1}\" y1=\"{ya:.1}\" x2=\"{:.1}\" y2=\"{ya:.1}\" stroke=\"{colour}\" stroke-dasharray=\"2 2\"/>\
             <rect class=\"verified\" x=\"{:.1}\" y=\"{:.1}\" width=\"6\" height=\"6\" fill=\"{colour}\"/>",
            x.px(p),
            x.px(m),
            x.px(m) - 3.0,
            y.px(a) - 3.0,
            ya = y.px(a),
        );
    }
}

/// The two plots of one device in one space.
fn device_plots(
    spaces: &Spaces,
    device_id: &str,
    space: SearchSpace,
    pred: &PredictionRow,
    measured: &[MeasurementRow],
    search: Option<&SearchView>,
) -> String {
    let samples = samples_of(measured, space, SampleSet::All);
    let rows = samples.rows();
    let fit: std::collections::HashSet<usize> = pred.train_rows.iter().copied().collect();
    let points: Vec<(f64, f64, bool)> = samples
        .iter()
        .filter_map(|s| {
            let p = pred.latencies.get(s.row)?;
            Some((s.ms, *p, fit.contains(&s.row)))
        })
        .collect();
    let safe: String = device_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let mut out = format!(
        "<div class=\"plots\">{}",
        scatter_svg(&format!("scatter-{safe}-{space}"), &points)
    );
    if let Some(acc) = spaces.get(&space).and_then(|k| k.accuracy.as_ref()) {
        let all: Vec<(f64, f64)> = pred
            .latencies
            .iter()
            .zip(acc)
            .filter_map(|(l, a)| a.map(|a| (*l, a)))
            .collect();
        let mine: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|&r| Some((*pred.latencies.get(r)?, (*acc.get(r)?)?)))
            .collect();
        let overlay = search.map(|v| overlay(v, acc));
        out.push_str(&pareto_svg(
            &format!("pareto-{safe}-{space}"),
            &all,
            &mine,
            overlay.as_ref(),
        ));
    }
    out.push_str("</div>");
    out
}

/// A search placed on the plot (candidates at the plot's accuracy, which
/// may differ from the search's objective).
fn overlay(v: &SearchView, acc: &[Option<f64>]) -> SearchOverlay {
    let acc_of = |row: usize| acc.get(row).copied().flatten();
    SearchOverlay {
        budget_ms: v.max_latency_ms,
        chosen: acc_of(v.chosen.index).map(|a| (v.chosen.predicted_ms, v.chosen.upper_ms, a)),
        verified: v
            .candidates
            .iter()
            .filter_map(|c| Some((c.predicted_ms, c.measured_ms?, acc_of(c.index)?)))
            .collect(),
    }
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
    if let Some(f) = &v.first_within_budget {
        let _ = write!(
            b,
            "<p id=\"verified\">first candidate measured within the budget: rank {} <code>{}</code>, measured {:.3} ms</p>",
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

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "&#8211;".to_string(), |v| format!("{v:.3}"))
}

/// `GET /`: the fleet.
pub async fn index(
    State(store): State<Store>,
    State(spaces): State<Spaces>,
    State(predictions): State<Arc<PredictionCache>>,
) -> Result<Html<String>, AppError> {
    let mut b = String::from("<h1>nasflat host</h1>");
    let _ = write!(b, "<p class=\"muted\">spaces: ");
    for (s, k) in spaces.iter() {
        let r = k.report();
        let state = wire_name(r.state);
        let detail = match (r.state, r.progress) {
            (ModelState::Pretraining, Some((d, t))) => format!("{state} {d}/{t} epochs"),
            _ => state,
        };
        let _ = write!(b, "<b>{s}</b> {} &nbsp; ", esc(&detail));
    }
    b.push_str("</p><h2>Devices</h2><table id=\"devices\"><tr><th>device</th><th>name</th><th>runtime</th><th>samples</th><th>unsettled</th><th>queue (queued/leased/done)</th><th>transfer</th><th>predictor</th><th>held-out Spearman</th><th>last seen</th></tr>");
    let devices = store.devices().await?;
    let transfers = store.transfers("").await?;
    let mut plots = String::new();
    for d in &devices {
        let measured = store.measurements_of_device(&d.id).await?;
        let q = store.queue_counts(Some(&d.id)).await?;
        let t = transfers.iter().find(|t| t.device_id == d.id);
        let transfer = t.map_or_else(
            || "&#8211;".to_string(),
            |t| format!("{} {:.0}%", t.state, t.progress * 100.0),
        );
        let mut version = "&#8211;".to_string();
        let mut held = None;
        for space in spaces.keys() {
            if let Some(p) = predictions.get(&d.id, *space).await? {
                version = esc(&p.version);
                held = quality(&p, &measured, *space).heldout_spearman;
                if plots.matches("class=\"device-plots\"").count() < 8 {
                    let _ = write!(
                        plots,
                        "<div class=\"device-plots\"><h3>{} ({space})</h3>{}</div>",
                        esc(&d.name),
                        device_plots(&spaces, &d.id, *space, &p, &measured, None)
                    );
                }
            }
        }
        let _ = write!(
            b,
            "<tr class=\"device\"><td><a href=\"/dashboard/devices/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td class=\"unsettled\">{}</td><td>{}/{}/{}</td><td>{transfer}</td><td><code>{version}</code></td><td>{}</td><td>{}</td></tr>",
            esc(&d.name),
            esc(&runtime_label(d)),
            measured.len(),
            unsettled_count(&measured),
            q.queued,
            q.leased + q.expired,
            q.done,
            opt(held),
            fmt_time(d.last_seen_ms),
            id = esc(&d.id),
        );
    }
    if devices.is_empty() {
        b.push_str("<tr><td colspan=\"9\" class=\"muted\">no agent registered yet: run <code>nasflat-agent run --host URL --token ENROL_TOKEN</code></td></tr>");
    }
    b.push_str("</table>");
    if !plots.is_empty() {
        b.push_str("<h2>Predictors</h2>");
        b.push_str(&plots);
    }
    let open = store.open_jobs(50).await?;
    let counts = store.queue_counts(None).await?;
    let _ = write!(
        b,
        "<h2>Lease queue</h2><p>{} queued, {} leased, {} expired (back in the queue), {} done, {} failed</p>\
         <table id=\"leases\"><tr><th>job</th><th>device</th><th>purpose</th><th>what</th><th>state</th><th>expires</th><th>attempts</th></tr>",
        counts.queued, counts.leased, counts.expired, counts.done, counts.failed
    );
    let now = super::store::now_ms();
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
    b.push_str("</table><h2>User models</h2><table id=\"models\"><tr><th>model</th><th>name</th><th>size</th><th>results</th></tr>");
    for m in store.models().await? {
        let n = store.measurements_of_model(&m.id).await?.len();
        let _ = write!(
            b,
            "<tr><td><a href=\"/v1/models/{id}/results\">{id}</a></td><td>{}</td><td>{} B</td><td>{n}</td></tr>",
            esc(&m.name),
            m.size_bytes,
            id = esc(&m.id)
        );
    }
    b.push_str("</table><h2>Built-in devices (paper source devices)</h2><details><summary>");
    let builtins: usize = spaces.values().map(|k| k.source_names().len()).sum();
    let _ = write!(b, "{builtins} devices</summary><p>");
    for (s, k) in spaces.iter() {
        for n in k.source_names() {
            let _ = write!(b, "<code>{s}:{}</code> ", esc(n));
        }
    }
    b.push_str("</p></details><p class=\"muted\">API: <a href=\"/v1/openapi.json\">/v1/openapi.json</a> &middot; <a href=\"/metrics\">/metrics</a> &middot; <a href=\"/healthz\">/healthz</a></p>");
    Ok(page("nasflat host", &b))
}

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
        unsettled_count(&measured),
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

/// "ort 1.32.0, 1 thread": the runtime a device's latencies come from.
fn runtime_label(d: &crate::service::store::devices::DeviceRow) -> String {
    d.runtime()
        .map_or_else(|| "unknown".to_string(), |r| r.to_string())
}

/// Measurements whose label did not settle.
fn unsettled_count(measured: &[MeasurementRow]) -> usize {
    measured.iter().filter(|m| m.settled == Some(false)).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pareto_front_keeps_only_undominated_points() {
        let pts = [
            (1.0, 50.0),
            (2.0, 40.0),
            (2.0, 60.0),
            (3.0, 55.0),
            (4.0, 70.0),
        ];
        assert_eq!(
            pareto_front(&pts),
            vec![(1.0, 50.0), (2.0, 60.0), (4.0, 70.0)]
        );
        let svg = pareto_svg("p", &pts, &[(2.0, 60.0)], None);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("class=\"pt\"").count(), 1);
        let s = scatter_svg("s", &[(1.0, 1.1, true), (2.0, 1.9, false)]);
        assert_eq!(s.matches("class=\"pt\"").count(), 2);
        assert_eq!(esc("<a&\"b\">"), "&lt;a&amp;&quot;b&quot;&gt;");
    }
}
