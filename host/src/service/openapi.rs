//! The OpenAPI 3.1 document at `/v1/openapi.json`, generated from the route
//! table ([`super::api::ROUTES`]); request and response bodies are described
//! by name (the protocol types live in `nasflat_shared::protocol`, the
//! service's in `nasflat_host::service::api`).

use serde_json::{Map, Value, json};

use super::api::ROUTES;

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for (method, path, auth, summary) in ROUTES {
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let security = if *auth == "public" {
            json!([])
        } else {
            json!([{"bearer": []}])
        };
        let op = json!({
            "summary": summary,
            "description": format!("Auth: {auth}. Bodies: JSON or postcard (application/x-postcard); errors: ErrorBody {{code, message, rejected}}."),
            "parameters": params,
            "security": security,
            "responses": {
                "200": {"description": "OK"},
                "4XX": {"description": "ErrorBody", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
            }
        });
        let entry = paths
            .entry(path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = entry {
            m.insert(method.to_string(), op);
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "nasflat host",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Few-shot latency prediction service: agents measure, the host transfers and predicts."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "ErrorBody": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "rejected": {
                            "description": "422 invalid_results: [idempotency key, reason] per refused result; nothing of the batch was stored",
                            "type": "array",
                            "items": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "string"}], "minItems": 2, "maxItems": 2}
                        }
                    }
                }
            }
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Every `.route("PATH", METHOD(...)...)` in the router is in the table
    /// and the table names no route the router lacks.
    #[test]
    fn every_route_is_documented() {
        let src = include_str!("api/mod.rs");
        let body = &src[src.find("pub fn router").unwrap()..];
        let mut routed = std::collections::BTreeSet::new();
        for chunk in body.split(".route(").skip(1) {
            let path = chunk.split('"').nth(1).unwrap().to_string();
            let call = &chunk[..chunk.find("\n        .").unwrap_or(chunk.len())];
            for method in ["get", "post", "put", "delete"] {
                if call.contains(&format!("{method}(")) {
                    routed.insert((method.to_string(), path.clone()));
                }
            }
        }
        let documented: std::collections::BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p, _, _)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(routed, documented);
        let doc = document();
        for (m, p) in &documented {
            assert!(doc["paths"][p][m].is_object(), "{m} {p} missing");
        }
    }
}
