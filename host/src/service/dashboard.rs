//! The dashboard: server-rendered HTML with inline SVG plots and inline CSS,
//! no scripts and no external resources, so it works offline and in any
//! browser. Devices, samples, the lease queue, predictor quality, a
//! predicted-vs-measured scatter and a latency-accuracy Pareto plot per device.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Html;
use nasflat_shared::SearchSpace;

use super::api::devices::quality;
use super::domain::Subject;
use super::error::AppError;
use super::knowledge::ModelState;
use super::knowledge::Spaces;
use super::predictions::PredictionCache;
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

/// Predicted latency vs accuracy over the space, with the Pareto front.
pub fn pareto_svg(id: &str, points: &[(f64, f64)], measured: &[(f64, f64)]) -> String {
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

/// The two plots of one device in one space.
fn device_plots(
    spaces: &Spaces,
    device_id: &str,
    space: SearchSpace,
    pred: &PredictionRow,
    measured: &[MeasurementRow],
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
        out.push_str(&pareto_svg(&format!("pareto-{safe}-{space}"), &all, &mine));
    }
    out.push_str("</div>");
    out
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
    b.push_str("</p><h2>Devices</h2><table id=\"devices\"><tr><th>device</th><th>name</th><th>samples</th><th>queue (queued/leased/done)</th><th>transfer</th><th>predictor</th><th>held-out Spearman</th><th>last seen</th></tr>");
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
                        device_plots(&spaces, &d.id, *space, &p, &measured)
                    );
                }
            }
        }
        let _ = write!(
            b,
            "<tr class=\"device\"><td><a href=\"/dashboard/devices/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}/{}/{}</td><td>{transfer}</td><td><code>{version}</code></td><td>{}</td><td>{}</td></tr>",
            esc(&d.name),
            measured.len(),
            q.queued,
            q.leased + q.expired,
            q.done,
            opt(held),
            fmt_time(d.last_seen_ms),
            id = esc(&d.id),
        );
    }
    if devices.is_empty() {
        b.push_str("<tr><td colspan=\"8\" class=\"muted\">no agent registered yet: run <code>nasflat-agent run --host URL --token ENROL_TOKEN</code></td></tr>");
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

/// `GET /dashboard/devices/{id}`: one device.
pub async fn device_page(
    State(store): State<Store>,
    State(spaces): State<Spaces>,
    State(predictions): State<Arc<PredictionCache>>,
    Path(id): Path<String>,
) -> Result<Html<String>, AppError> {
    let d = store
        .device(&id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no agent device `{id}`")))?;
    let measured = store.measurements_of_device(&id).await?;
    let mut b = format!(
        "<p><a href=\"/\">&larr; fleet</a></p><h1>{} <span class=\"muted\">{}</span></h1><h2>Fingerprint</h2><pre>{}</pre>",
        esc(&d.name),
        esc(&d.id),
        esc(
            &serde_json::from_str::<serde_json::Value>(&d.fingerprint_json)
                .and_then(|v| serde_json::to_string_pretty(&v))
                .unwrap_or_default()
        )
    );
    for space in spaces.keys() {
        if let Some(p) = predictions.get(&id, *space).await? {
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
                device_plots(&spaces, &id, *space, &p, &measured)
            );
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
    b.push_str("</table><h2>Samples</h2><table id=\"samples\"><tr><th>key</th><th>purpose</th><th>what</th><th>median ms</th><th>valid</th><th>received</th></tr>");
    for m in measured.iter().rev() {
        let what = describe(&m.subject);
        let _ = write!(
            b,
            "<tr><td><a href=\"/v1/devices/{id}/samples/{k}\">{k}</a></td><td>{}</td><td>{}</td><td>{:.3}</td><td>{}</td><td>{}</td></tr>",
            m.purpose,
            esc(&what),
            m.median_ms,
            if m.valid {
                "yes".to_string()
            } else {
                esc(&m.invalid_reasons.join("; "))
            },
            fmt_time(m.received_ms),
            id = esc(&id),
            k = esc(&m.key)
        );
    }
    b.push_str("</table>");
    Ok(page(&format!("nasflat: {}", d.name), &b))
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
        let svg = pareto_svg("p", &pts, &[(2.0, 60.0)]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("class=\"pt\"").count(), 1);
        let s = scatter_svg("s", &[(1.0, 1.1, true), (2.0, 1.9, false)]);
        assert_eq!(s.matches("class=\"pt\"").count(), 2);
        assert_eq!(esc("<a&\"b\">"), "&lt;a&amp;&quot;b&quot;&gt;");
    }
}
