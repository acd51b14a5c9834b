//! The registry HTTP API, served next to `/metrics` on the local listener (`[metrics] listen`,
//! loopback by default): the cluster catalog (Consul/Eureka's role) and this node's own
//! instances, as JSON. Request bodies are bounded; errors are `{"error": "…"}` with a 4xx code.

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::control::server::{catalog, status};
use crate::control::ControlCtx;
use crate::discovery::catalog::{CheckTemplate, ServiceSpec};
use crate::discovery::registry::Source;

/// Largest request body.
const MAX_BODY: usize = 64 * 1024;

/// The API routes.
pub fn router(ctx: Arc<ControlCtx>) -> Router {
    Router::new()
        .route("/v1/status", get(get_status))
        .route("/v1/catalog/services", get(services))
        .route("/v1/catalog/service/{name}", get(service))
        .route("/v1/catalog/nodes", get(nodes))
        .route("/v1/agent/services", get(agent_services).put(agent_register))
        .route("/v1/agent/service/{*id}", delete(agent_deregister))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(ctx)
        .merge(crate::ui::router())
}

fn error(code: StatusCode, msg: impl std::fmt::Display) -> Response {
    (code, Json(json!({"error": msg.to_string()}))).into_response()
}

async fn cat(ctx: &ControlCtx) -> Result<Value, Response> {
    catalog(ctx).await.map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")))
}

async fn get_status(State(ctx): State<Arc<ControlCtx>>) -> Response {
    match status(&ctx).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
    }
}

/// `{name: {"instances": n, "passing": n, "tags": [...]}}`.
async fn services(State(ctx): State<Arc<ControlCtx>>) -> Response {
    let c = match cat(&ctx).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut out = BTreeMap::new();
    for (name, list) in c["services"].as_object().into_iter().flatten() {
        let list = list.as_array().cloned().unwrap_or_default();
        let passing = list.iter().filter(|i| i["health"] == "passing").count();
        let mut tags: Vec<Value> =
            list.iter().flat_map(|i| i["tags"].as_array().cloned().unwrap_or_default()).collect();
        tags.sort_by_key(|t| t.to_string());
        tags.dedup();
        out.insert(name.clone(), json!({"instances": list.len(), "passing": passing, "tags": tags}));
    }
    Json(out).into_response()
}

#[derive(Deserialize)]
struct ServiceQuery {
    /// Only passing instances.
    passing: Option<String>,
    /// Only instances with this tag.
    tag: Option<String>,
}

/// Instances of one service with their health; `?passing` and `?tag=T` filter.
async fn service(
    State(ctx): State<Arc<ControlCtx>>,
    Path(name): Path<String>,
    Query(q): Query<ServiceQuery>,
) -> Response {
    let c = match cat(&ctx).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(list) = c["services"].get(&name).and_then(Value::as_array) else {
        return error(StatusCode::NOT_FOUND, format!("no service named {name:?}"));
    };
    let list: Vec<&Value> = list
        .iter()
        .filter(|i| q.passing.is_none() || i["health"] == "passing")
        .filter(|i| {
            q.tag
                .as_ref()
                .is_none_or(|t| i["tags"].as_array().is_some_and(|tags| tags.iter().any(|x| x == t)))
        })
        .collect();
    Json(list).into_response()
}

async fn nodes(State(ctx): State<Arc<ControlCtx>>) -> Response {
    match cat(&ctx).await {
        Ok(c) => Json(c["nodes"].clone()).into_response(),
        Err(r) => r,
    }
}

async fn agent_services(State(ctx): State<Arc<ControlCtx>>) -> Response {
    Json(ctx.registry.list()).into_response()
}

async fn agent_register(State(ctx): State<Arc<ControlCtx>>, body: axum::body::Bytes) -> Response {
    let mut spec: ServiceSpec = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad service definition: {e}")),
    };
    if spec.network.is_empty() {
        spec.network = ctx.nets.first().map(|n| n.name.clone()).unwrap_or_default();
    }
    // Any local user can reach this listener; a command check would run as the daemon's user.
    if matches!(spec.check.as_ref().map(|c| &c.template), Some(CheckTemplate::Command { .. })) {
        return error(
            StatusCode::FORBIDDEN,
            "command checks are accepted only from the node TOML or `weft service add` (root-only control socket)",
        );
    }
    match ctx.registry.add(spec, Source::Api) {
        Ok(id) => (StatusCode::CREATED, Json(json!({"id": id}))).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, format!("{e:#}")),
    }
}

async fn agent_deregister(State(ctx): State<Arc<ControlCtx>>, Path(id): Path<String>) -> Response {
    let removed = ctx.registry.remove(&id);
    if removed.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            format!("no service instance or service named {id:?} on this node"),
        );
    }
    Json(json!({"removed": removed})).into_response()
}
