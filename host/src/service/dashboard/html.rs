//! What every dashboard page shares: the page frame with its style, HTML
//! escaping, and the formats of table cells.

use axum::response::Html;

use crate::service::domain::Subject;
use crate::service::store::devices::DeviceRow;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;font-size:.9em}\
th{background:#f0f0f0}h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.5em}.plots{display:flex;flex-wrap:wrap;gap:1em}\
svg{background:#fafafa;border:1px solid #ddd}.muted{color:#777}code{background:#f4f4f4;padding:0 .2em}";

/// A value's name as the JSON API spells it (one spelling for states the
/// store does not keep).
pub(super) fn wire_name(value: impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A job's or measurement's subject, for a table cell.
pub(super) fn describe(subject: &Subject) -> String {
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

pub(super) fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"15\">\
         <title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        esc(title)
    ))
}

pub(super) fn fmt_time(ms: i64) -> String {
    let secs = (crate::service::store::now_ms() - ms) / 1000;
    match secs {
        s if s < 60 => format!("{s} s ago"),
        s if s < 3600 => format!("{} min ago", s / 60),
        s => format!("{} h ago", s / 3600),
    }
}

pub(super) fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "&#8211;".to_string(), |v| format!("{v:.3}"))
}

/// "ort 1.32.0, 1 thread": the runtime a device's latencies come from.
pub(super) fn runtime_label(d: &DeviceRow) -> String {
    d.runtime()
        .map_or_else(|| "unknown".to_string(), |r| r.to_string())
}
