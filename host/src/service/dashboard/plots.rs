//! The SVG plots: predicted vs measured latency, and the space's
//! latency-accuracy Pareto plot with a search drawn on it.

use std::fmt::Write;

use nasflat_shared::SearchSpace;

use super::html::esc;
use crate::service::knowledge::Spaces;
use crate::service::search::SearchView;
use crate::service::store::measurements::MeasurementRow;
use crate::service::store::transfers::PredictionRow;
use crate::service::transfer::{SampleSet, samples_of};

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
pub(super) fn device_plots(
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
