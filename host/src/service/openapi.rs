//! The OpenAPI 3.1 document at `/v1/openapi.json`, generated from the route
//! table the router is built from (`api::routes`): each [`Route`]
//! names its handler and the Rust types of its query, request body and
//! success response, and their JSON Schemas (`schemars`, derived on the wire
//! types of `nasflat_shared::protocol` and on the service's own in
//! `nasflat_host::service`) land in `components.schemas`, so a client can be
//! generated from the document. This module describes routes and knows
//! nothing of the handlers: a route carries its handler as an opaque `H`.
//!
//! The schemas describe the JSON encoding. Postcard bodies
//! (`application/x-postcard`) carry the same Rust types in serde's postcard
//! encoding: fields in schema order, no names; architectures as op ids.

use std::sync::Arc;

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use nasflat_shared::protocol::{ErrorBody, POSTCARD_MIME};

/// Writes the schema of one body or query type into a generator.
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// A reference to `T`'s schema in `components.schemas` (or `T`'s schema
/// itself for types schemars inlines, such as `Vec<T>` around a `$ref`).
pub fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// `T`'s own object schema, inline: for a `Query<T>`, whose fields become
/// query parameters.
pub fn fields<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    T::json_schema(g)
}

/// The HTTP methods the service routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    /// GET.
    Get,
    /// POST.
    Post,
}

impl Method {
    /// The lower-case key OpenAPI gives an operation.
    pub fn key(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
        }
    }
}

/// The cookie that carries a read token for the dashboard: a browser
/// cannot send a bearer header when following a link, so
/// `GET /?token=VIEWER_TOKEN` stores the token in it and redirects.
pub const VIEWER_COOKIE: &str = "nasflat_viewer";

/// Who may call a route: which bearer token it checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// No token.
    Public,
    /// The viewer or the admin token (bearer, or the dashboard's cookie):
    /// fleet data is not public.
    Viewer,
    /// Like [`Auth::Viewer`], but public when the service runs with
    /// `--public-dashboard`; `?token=` logs a browser in.
    Dashboard,
    /// The admin token.
    Admin,
    /// A device's own token.
    Device,
    /// A device's own token or the admin token.
    DeviceOrAdmin,
    /// The enrolment token (a new device) or a device's own token (re-attach).
    EnrolmentOrDevice,
}

impl Auth {
    /// How the document words it.
    pub fn describe(self) -> &'static str {
        match self {
            Auth::Public => "public",
            Auth::Viewer => "viewer or admin token (bearer, or the dashboard's cookie)",
            Auth::Dashboard => {
                "viewer or admin token (bearer, the dashboard's cookie, or `?token=` to set it); \
                 public with `--public-dashboard`"
            }
            Auth::Admin => "admin token",
            Auth::Device => "device token",
            Auth::DeviceOrAdmin => "device or admin token",
            Auth::EnrolmentOrDevice => "enrolment or device token",
        }
    }
}

/// What a request or response body holds.
#[derive(Debug, Clone, Copy)]
pub enum Body {
    /// No body.
    Empty,
    /// A JSON or postcard body of this type (`Wire` requests; `Reply`
    /// responses, postcard when the client's `Accept` asks for it).
    Wire(SchemaFn),
    /// Like [`Body::Wire`], but the body may be empty (`OptionalBody`: then
    /// the type's defaults).
    OptionalWire(SchemaFn),
    /// A JSON body of this type.
    Json(SchemaFn),
    /// Bytes of this content type, not described further (ONNX, HTML, text).
    Raw(&'static str),
}

/// One route: what the router serves (`handler`) and what the document
/// says of it, in one value so the two cannot drift apart.
#[derive(Debug, Clone)]
pub struct Route<H> {
    /// The method the handler is routed under.
    pub method: Method,
    /// Path with `{param}` segments, as given to `Router::route`.
    pub path: &'static str,
    /// Who may call it.
    pub auth: Auth,
    /// One line.
    pub summary: &'static str,
    /// The handler (for the router; the document ignores it).
    pub handler: H,
    /// The handler's `Query<T>`, if any.
    pub query: Option<SchemaFn>,
    /// The request body.
    pub request: Body,
    /// Success status.
    pub status: u16,
    /// Body of the success status.
    pub response: Body,
    /// Another non-error answer (status, body), e.g. `/healthz`'s 503.
    pub also: Option<(u16, Body)>,
}

impl<H> Route<H> {
    /// A route without query or body answering 200 with no body until
    /// [`Route::query`], [`Route::takes`] and [`Route::answers`] say otherwise.
    pub fn new(
        method: Method,
        path: &'static str,
        auth: Auth,
        summary: &'static str,
        handler: H,
    ) -> Route<H> {
        Route {
            method,
            path,
            auth,
            summary,
            handler,
            query: None,
            request: Body::Empty,
            status: 200,
            response: Body::Empty,
            also: None,
        }
    }

    /// Sets the query parameters (see [`fields`]).
    pub fn query(self, query: SchemaFn) -> Route<H> {
        Route {
            query: Some(query),
            ..self
        }
    }

    /// Sets the request body.
    pub fn takes(self, request: Body) -> Route<H> {
        Route { request, ..self }
    }

    /// Sets the success status and its body.
    pub fn answers(self, status: u16, response: Body) -> Route<H> {
        Route {
            status,
            response,
            ..self
        }
    }

    /// Adds another non-error answer.
    pub fn also(self, status: u16, response: Body) -> Route<H> {
        Route {
            also: Some((status, response)),
            ..self
        }
    }
}

/// The generated document, built once with the router and shared by the
/// handler of `/v1/openapi.json`.
#[derive(Debug, Clone)]
pub struct ApiDocument(Arc<Value>);

impl ApiDocument {
    /// Wraps a document made by [`document`].
    pub fn new(document: Value) -> ApiDocument {
        ApiDocument(Arc::new(document))
    }

    /// The JSON document.
    pub fn value(&self) -> &Value {
        &self.0
    }
}

/// `true` (any value) as `{}`: some OpenAPI tools reject boolean schemas.
fn schema_value(s: Schema) -> Value {
    match s.to_value() {
        Value::Bool(true) => json!({}),
        v => v,
    }
}

/// The `content` map of a body, or `None` without one.
fn content(body: Body, g: &mut SchemaGenerator) -> Option<Value> {
    match body {
        Body::Empty => None,
        Body::Wire(f) | Body::OptionalWire(f) => {
            let s = schema_value(f(g));
            Some(json!({"application/json": {"schema": s}, POSTCARD_MIME: {"schema": s}}))
        }
        Body::Json(f) => Some(json!({"application/json": {"schema": schema_value(f(g))}})),
        Body::Raw(mime) => Some(json!({ mime: {} })),
    }
}

fn response(status: u16, body: Body, g: &mut SchemaGenerator) -> Value {
    let description = match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        503 => "Service Unavailable",
        _ => "Answer",
    };
    let mut r = json!({ "description": description });
    if let Some(c) = content(body, g) {
        r["content"] = c;
    }
    r
}

/// Query parameters from the fields of a `Query<T>` type: one per property,
/// required when the type requires it; an optional field's `null` is dropped
/// (an absent parameter is how a query says "none").
fn query_parameters(f: SchemaFn, g: &mut SchemaGenerator) -> Vec<Value> {
    let object = f(g).to_value();
    let required: Vec<&str> = object["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(props) = object["properties"].as_object() else {
        return Vec::new();
    };
    props
        .iter()
        .map(|(name, schema)| {
            let mut schema = schema.clone();
            let description = schema
                .as_object_mut()
                .and_then(|o| o.remove("description"))
                .unwrap_or(Value::Null);
            if let Some(types) = schema["type"].as_array() {
                let kept: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
                schema["type"] = match kept.as_slice() {
                    [one] => one.clone(),
                    _ => Value::Array(kept),
                };
            }
            let mut p = json!({
                "name": name,
                "in": "query",
                "required": required.contains(&name.as_str()),
                "schema": schema,
            });
            if !description.is_null() {
                p["description"] = description;
            }
            p
        })
        .collect()
}

/// `get_v1_devices_id_predict`: unique per (method, path), for generated
/// client method names.
fn operation_id(method: &str, path: &str) -> String {
    let words: Vec<&str> = path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        format!("{method}_root")
    } else {
        format!("{method}_{}", words.join("_"))
    }
}

/// The operation object of one route.
fn operation<H>(route: &Route<H>, error: &Value, g: &mut SchemaGenerator) -> Value {
    let mut params: Vec<Value> = route
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    if let Some(q) = route.query {
        params.extend(query_parameters(q, g));
    }
    let security = match route.auth {
        Auth::Public => json!([]),
        Auth::Viewer | Auth::Dashboard => json!([{"bearer": []}, {"viewer_cookie": []}]),
        _ => json!([{"bearer": []}]),
    };
    let mut responses = Map::new();
    responses.insert(
        route.status.to_string(),
        response(route.status, route.response, g),
    );
    if let Some((status, body)) = route.also {
        responses.insert(status.to_string(), response(status, body, g));
    }
    for range in ["4XX", "5XX"] {
        responses.insert(
            range.to_string(),
            json!({"description": "ErrorBody", "content": {"application/json": {"schema": error}}}),
        );
    }
    let mut op = json!({
        "operationId": operation_id(route.method.key(), route.path),
        "summary": route.summary,
        "description": format!("Auth: {}.", route.auth.describe()),
        "parameters": params,
        "security": security,
        "responses": responses,
    });
    if let Some(c) = content(route.request, g) {
        let required = !matches!(route.request, Body::OptionalWire(_));
        op["requestBody"] = json!({"required": required, "content": c});
    }
    op
}

/// The document of `routes`.
pub fn document<H>(routes: &[Route<H>]) -> Value {
    let mut g = SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .into_generator();
    let error = schema_value(g.subschema_for::<ErrorBody>());
    let mut paths = Map::new();
    for route in routes {
        let op = operation(route, &error, &mut g);
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = entry {
            m.insert(route.method.key().to_string(), op);
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "nasflat host",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!(
                "Few-shot latency prediction service: agents measure, the host transfers and predicts. \
                 Bodies are JSON or postcard ({POSTCARD_MIME}): the schemas describe JSON; postcard \
                 carries the same types in serde's postcard encoding (fields in schema order, \
                 architectures as op ids). Errors are ErrorBody {{code, message, rejected}}."
            )
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "viewer_cookie": {"type": "apiKey", "in": "cookie", "name": VIEWER_COOKIE},
            },
            "schemas": g.take_definitions(true),
        }
    })
}

#[cfg(test)]
mod tests;
