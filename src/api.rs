//! The registry HTTP API, served next to `/metrics` on the local listener (`[metrics] listen`,
//! loopback by default): the cluster catalog (Consul/Eureka's role) and this node's own
//! instances, as JSON.
//!
//! Every error, from a handler or from routing itself, is `{"error": "…"}` with its status:
//! 400 for a body or query that does not parse (the message names the field, never a Rust
//! type), 401 for a write without the right token, 403, 404 (also for unknown routes), 405
//! with `Allow`, 413 beyond [`MAX_BODY`], 421 for a foreign `Host`, 503 when the engine does
//! not answer. [`guarded`] applies `crate::http_access`'s rules before any route. Request bodies refuse unknown fields, so a misspelt key
//! is an error rather than a silently ignored default.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::header::{AUTHORIZATION, HOST, WWW_AUTHENTICATE};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use crate::control::server::{catalog, status};
use crate::control::ControlCtx;
use crate::discovery::catalog::{Check, CheckTemplate, ServiceSpec, Target};
use crate::discovery::directory::Protocol;
use crate::discovery::registry::Source;
use crate::http_access::{HttpAccess, Refusal};
use crate::report::counters::LocalStats;
use crate::report::{Catalog, CatalogInstance, ErrorReply, ServiceAdded, ServiceSummary, ServicesRemoved};

/// Largest request body.
pub const MAX_BODY: usize = 64 * 1024;

/// The API routes (and the status page's). Give the listener's whole router to
/// [`with_json_errors`] last, so that its routes answer errors in JSON too.
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

/// Unknown routes answer 404 and known routes with a wrong method 405 (axum adds `Allow`),
/// both as JSON. Applies to the routes `app` has now: call it after the last `route`/`merge`.
pub fn with_json_errors(app: Router) -> Router {
    app.fallback(not_found).method_not_allowed_fallback(method_not_allowed)
}

/// Checks every request against `access` before it reaches a route (unknown routes too):
/// a foreign `Host` is 421, a write without a configured token 403, one without the right
/// token 401; each refusal is counted in `stats`. Call it after [`with_json_errors`].
pub fn guarded(app: Router, access: Arc<HttpAccess>, stats: Arc<LocalStats>) -> Router {
    app.layer(axum::middleware::from_fn(move |req: Request, next: Next| {
        let (access, stats) = (Arc::clone(&access), Arc::clone(&stats));
        async move {
            let h = req.headers();
            let verdict = access.check(
                req.method(),
                h.get(HOST).map(|v| v.as_bytes()),
                h.get(AUTHORIZATION).map(|v| v.as_bytes()),
            );
            match verdict {
                Ok(()) => next.run(req).await,
                Err(r) => refused(r, &stats),
            }
        }
    }))
}

fn refused(r: Refusal, stats: &LocalStats) -> Response {
    match r {
        Refusal::Host(why) => {
            stats.api_host_refused.fetch_add(1, Relaxed);
            error(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "{why}: this listener answers only requests for an IP address, localhost or a \
                     name in metrics.allowed_hosts (a defence against DNS rebinding)"
                ),
            )
        }
        Refusal::NoToken => {
            stats.api_token_refused.fetch_add(1, Relaxed);
            error(
                StatusCode::FORBIDDEN,
                "writes over HTTP are off: use `weft service add` / `weft service remove` (control \
                 socket), or set metrics.api_token_file and send Authorization: Bearer <token>",
            )
        }
        Refusal::BadToken => {
            stats.api_token_refused.fetch_add(1, Relaxed);
            let mut resp = error(
                StatusCode::UNAUTHORIZED,
                "a write needs Authorization: Bearer <the token in metrics.api_token_file>",
            );
            resp.headers_mut().insert(WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
            resp
        }
    }
}

async fn not_found(uri: Uri) -> Response {
    error(StatusCode::NOT_FOUND, format!("no route {}; the API is under /v1/ (see README)", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed on {}", uri.path()))
}

fn error(code: StatusCode, msg: impl std::fmt::Display) -> Response {
    (code, Json(ErrorReply { error: msg.to_string() })).into_response()
}

async fn cat(ctx: &ControlCtx) -> Result<Catalog, Response> {
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
    let out: BTreeMap<&str, ServiceSummary> =
        c.services.iter().map(|(name, list)| (name.as_str(), ServiceSummary::of(list))).collect();
    Json(out).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceQuery {
    /// Only passing instances.
    passing: Option<String>,
    /// Only instances with this tag.
    tag: Option<String>,
}

/// Instances of one service with their health; `?passing` and `?tag=T` filter.
async fn service(
    State(ctx): State<Arc<ControlCtx>>,
    name: Result<Path<String>, PathRejection>,
    q: Result<Query<ServiceQuery>, QueryRejection>,
) -> Response {
    let name = match name {
        Ok(Path(n)) => n,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("query: {}", query_message(&e))),
    };
    let c = match cat(&ctx).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(list) = c.services.get(&name) else {
        return error(StatusCode::NOT_FOUND, format!("no service named {name:?}"));
    };
    let list: Vec<&CatalogInstance> = list
        .iter()
        .filter(|i| q.passing.is_none() || i.health == crate::report::Health::Passing)
        .filter(|i| q.tag.as_ref().is_none_or(|t| i.tags.contains(t)))
        .collect();
    Json(list).into_response()
}

async fn nodes(State(ctx): State<Arc<ControlCtx>>) -> Response {
    match cat(&ctx).await {
        Ok(c) => Json(c.nodes).into_response(),
        Err(r) => r,
    }
}

async fn agent_services(State(ctx): State<Arc<ControlCtx>>) -> Response {
    Json(ctx.registry.list()).into_response()
}

async fn agent_register(State(ctx): State<Arc<ControlCtx>>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(StatusCode::PAYLOAD_TOO_LARGE, format!("request body larger than {MAX_BODY} bytes"))
        }
        Err(e) => return error(e.status(), e.body_text()),
    };
    let mut spec = match Json::<ServiceBody>::from_bytes(&body) {
        Ok(Json(b)) => match b.into_spec() {
            Ok(s) => s,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad service definition: {e}")),
        },
        Err(e) => {
            return error(StatusCode::BAD_REQUEST, format!("bad service definition: {}", json_message(&e)))
        }
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
        Ok(id) => (StatusCode::CREATED, Json(ServiceAdded { id })).into_response(),
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
    Json(ServicesRemoved { removed }).into_response()
}

/// What serde said about a body, with the path of the field (`check.interval: …`) and without
/// axum's preamble.
fn json_message(e: &JsonRejection) -> String {
    match std::error::Error::source(e) {
        Some(inner) => inner.to_string(),
        None => e.body_text(),
    }
}

fn query_message(e: &QueryRejection) -> String {
    match std::error::Error::source(e) {
        Some(inner) => inner.to_string(),
        None => e.body_text(),
    }
}

/// A `PUT /v1/agent/services` body: the JSON form of a `[[service]]`. Its own type (rather
/// than [`ServiceSpec`]'s serde form) so that unknown fields are refused and every message
/// names a field in the API's terms.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a service definition (a JSON object)")]
struct ServiceBody {
    name: String,
    network: String,
    target: TargetBody,
    port: UInt<{ u16::MAX as u64 }>,
    protocol: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    check: Option<CheckBody>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase", expecting = r#"{"container": NAME} or {"address": IP}"#)]
enum TargetBody {
    Container(String),
    Address(IpAddr),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a check (a JSON object)")]
struct CheckBody {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    argv: Option<Vec<String>>,
    interval: UInt<{ u64::MAX }>,
    timeout: UInt<{ u64::MAX }>,
    rise: UInt<{ u32::MAX as u64 }>,
    fall: UInt<{ u32::MAX as u64 }>,
}

impl ServiceBody {
    fn into_spec(self) -> Result<ServiceSpec, String> {
        let protocol = match self.protocol.as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            p => return Err(format!("protocol: {p:?} must be \"tcp\" or \"udp\"")),
        };
        let target = match self.target {
            TargetBody::Container(c) => Target::Container(c),
            TargetBody::Address(a) => Target::Address(a),
        };
        let check = self.check.map(CheckBody::into_check).transpose().map_err(|e| format!("check.{e}"))?;
        // The bounds were checked by the types above.
        let port = self.port.0 as u16;
        let spec = ServiceSpec {
            name: self.name,
            network: self.network,
            target,
            port,
            protocol,
            tags: self.tags,
            check,
        };
        spec.validate()?;
        Ok(spec)
    }
}

impl CheckBody {
    fn into_check(self) -> Result<Check, String> {
        let template = match (self.kind.as_str(), self.path, self.argv) {
            ("tcp", None, None) => CheckTemplate::Tcp,
            ("http", Some(path), None) => CheckTemplate::Http { path },
            ("http", None, _) => return Err("path: an http check needs a path".into()),
            ("command", None, Some(argv)) => CheckTemplate::Command { argv },
            ("command", _, None) => return Err("argv: a command check needs argv".into()),
            ("tcp" | "command", Some(_), _) => return Err("path: only an http check has a path".into()),
            ("tcp" | "http", _, Some(_)) => return Err("argv: only a command check has argv".into()),
            (t, _, _) => return Err(format!("type: {t:?} must be \"tcp\", \"http\" or \"command\"")),
        };
        Ok(Check {
            template,
            interval: Duration::from_millis(self.interval.0),
            timeout: Duration::from_millis(self.timeout.0),
            rise: self.rise.0 as u32,
            fall: self.fall.0 as u32,
        })
    }
}

/// A non-negative integer at most `MAX`, whose errors say so (serde's would say `u16`).
#[derive(Debug, Clone, Copy)]
struct UInt<const MAX: u64>(u64);

impl<'de, const MAX: u64> Deserialize<'de> for UInt<MAX> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor<const MAX: u64>;
        impl<const MAX: u64> serde::de::Visitor<'_> for Visitor<MAX> {
            type Value = UInt<MAX>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                if MAX == u64::MAX {
                    write!(f, "a whole number")
                } else {
                    write!(f, "a whole number 0..={MAX}")
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                if v > MAX {
                    return Err(E::invalid_value(serde::de::Unexpected::Unsigned(v), &self));
                }
                Ok(UInt(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::invalid_value(serde::de::Unexpected::Signed(v), &self)),
                }
            }
        }
        d.deserialize_u64(Visitor::<MAX>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::registry::{OwnAddresses, Registry};
    use crate::plane::NetInfo;
    use serde_json::{json, Value};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A control context with one network and no engine (status and catalog answer 503).
    async fn ctx() -> Arc<ControlCtx> {
        let own = OwnAddresses {
            subnets: vec!["10.42.1.0/24".parse().unwrap()],
            underlay: "192.0.2.1".parse().unwrap(),
        };
        let (engine, _) = std::sync::mpsc::sync_channel(1);
        let (reload, _) = tokio::sync::mpsc::channel(1);
        Arc::new(ControlCtx {
            node: "h1".into(),
            nets: vec![NetInfo {
                name: "default".into(),
                vni: overlay_proto::wire::Vni::new(42).unwrap(),
                mtu: 1420,
                subnet: "10.42.0.0/16".parse().unwrap(),
                gateway: "10.42.1.1".parse().unwrap(),
                gateway_mac: [2, 0, 0, 0, 0, 1],
                encryption: crate::config::Encryption::ChaCha20Poly1305,
                remotes: vec![],
                remote_checksum: false,
            }],
            pools: vec!["10.42.1.0/24".parse().unwrap()],
            leases: tokio::sync::Mutex::new(crate::ipam::Leases::default()),
            netlink: crate::netlink::Netlink::new().await.expect("rtnetlink socket"),
            engine,
            registry: Registry::new([("default".to_owned(), 42)], own),
            dns_domain: None,
            dns_stats: Arc::default(),
            reload,
            local_stats: Arc::default(),
        })
    }

    /// The token the test listener is configured with.
    const TOKEN: &str = "test-token-0123456789";

    struct Answer {
        status: u16,
        headers: Vec<(String, String)>,
        body: Value,
    }

    impl Answer {
        fn error(&self) -> &str {
            self.body["error"].as_str().unwrap_or_else(|| panic!("not a JSON error: {}", self.body))
        }

        fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        }
    }

    /// One HTTP/1.1 exchange with the whole listener app (as `weft run` serves it), as a
    /// well-behaved local client: a loopback Host and the right token.
    async fn ask(method: &str, path: &str, body: &str) -> Answer {
        let headers = [("Host", "127.0.0.1:9571"), ("Authorization", &format!("Bearer {TOKEN}"))];
        ask_with(method, path, body, &headers, Some(TOKEN)).await.0
    }

    /// One exchange with exactly `headers`, with `token` configured (or none); also the
    /// listener's refusal counters afterwards.
    async fn ask_with(
        method: &str,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
        token: Option<&str>,
    ) -> (Answer, crate::report::counters::LocalSnapshot) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = token.map(|t| {
            let dir =
                std::env::temp_dir().join(format!("weft-api-token-{}-{}", std::process::id(), addr.port()));
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join("api.token");
            std::fs::write(&file, t).unwrap();
            std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
            let token = crate::http_access::ApiToken::load(&file).unwrap();
            std::fs::remove_dir_all(&dir).unwrap();
            token
        });
        let access = Arc::new(HttpAccess::new(token, vec!["weft-h1.example".into()]));
        let ctx = ctx().await;
        let stats = Arc::clone(&ctx.local_stats);
        let server = tokio::spawn(std::future::IntoFuture::into_future(axum::serve(
            listener,
            crate::metrics::app(ctx, access),
        )));
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut head = format!("{method} {path} HTTP/1.1\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
        s.write_all(head.as_bytes()).await.unwrap();
        // A refused oversized body may be answered before it is all sent.
        let _ = s.write_all(body.as_bytes()).await;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        server.abort();
        let raw = String::from_utf8(raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no header end: {raw:?}"));
        let mut lines = head.lines();
        let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers =
            lines.filter_map(|l| l.split_once(": ")).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {body:?}"));
        (Answer { status, headers, body }, stats.snapshot())
    }

    fn service(fields: &str) -> String {
        format!(
            r#"{{"name":"cache","network":"","target":{{"address":"10.42.1.1"}},"port":6379,"protocol":"tcp"{fields}}}"#
        )
    }

    #[tokio::test]
    async fn unknown_routes_and_wrong_methods_answer_json() {
        let a = ask("GET", "/v1/nope", "").await;
        assert_eq!(a.status, 404);
        assert!(a.error().contains("/v1/nope"), "{}", a.error());
        let a = ask("POST", "/v1/catalog/services", "").await;
        assert_eq!(a.status, 405);
        assert!(a.error().contains("POST"), "{}", a.error());
        assert_eq!(a.header("allow"), Some("GET,HEAD"));
        let a = ask("DELETE", "/v1/agent/services", "").await;
        assert_eq!((a.status, a.header("allow")), (405, Some("GET,HEAD,PUT")));
        let a = ask("POST", "/metrics", "").await;
        assert_eq!(a.status, 405, "the metrics route is under the same rules");
        a.error();
    }

    #[tokio::test]
    async fn rogue_bodies_are_refused_naming_the_field() {
        let a = ask("PUT", "/v1/agent/services", &service(r#","colour":"blue""#)).await;
        assert_eq!(a.status, 400);
        assert!(a.error().contains("unknown field `colour`"), "{}", a.error());
        let a = ask(
            "PUT",
            "/v1/agent/services",
            &service(
                r#","check":{"type":"tcp","interval":5000,"timeout":2000,"rise":1,"fall":2,"retries":3}"#,
            ),
        )
        .await;
        assert!(a.error().contains("check.retries: unknown field `retries`"), "{}", a.error());
        let a = ask(
            "PUT",
            "/v1/agent/services",
            &service(r#","check":{"type":"tcp","interval":"5s","timeout":2000,"rise":1,"fall":2}"#),
        )
        .await;
        assert!(
            a.error().contains("check.interval: invalid type: string \"5s\", expected a whole number"),
            "{}",
            a.error()
        );
        let a = ask("PUT", "/v1/agent/services", &service("").replace("6379", "70000")).await;
        assert!(
            a.error().contains("port: invalid value: integer `70000`, expected a whole number 0..=65535"),
            "{}",
            a.error()
        );
        for (body, want) in [("[]", "a service definition"), ("{", "EOF"), ("", "EOF")] {
            let a = ask("PUT", "/v1/agent/services", body).await;
            assert_eq!(a.status, 400, "{body:?}");
            assert!(a.error().contains(want), "{body:?}: {}", a.error());
        }
        for body in [service(r#","colour":1"#), "[]".into(), service("").replace("6379", "\"x\"")] {
            let e = ask("PUT", "/v1/agent/services", &body).await.error().to_owned();
            for rust in ["struct", "ServiceSpec", "ServiceBody", "u16", "u64"] {
                assert!(!e.contains(rust), "{body}: {e}");
            }
        }
        let a = ask("GET", "/v1/catalog/service/web?pasing", "").await;
        assert_eq!(a.status, 400);
        assert!(a.error().contains("unknown field `pasing`"), "{}", a.error());
    }

    #[tokio::test]
    async fn oversized_bodies_answer_413_json() {
        let big = service(&format!(r#","tags":["{}"]"#, "x".repeat(MAX_BODY)));
        let a = ask("PUT", "/v1/agent/services", &big).await;
        assert_eq!(a.status, 413);
        assert!(a.error().contains("larger than"), "{}", a.error());
    }

    #[tokio::test]
    async fn instances_other_nodes_would_drop_are_refused() {
        let a = ask("PUT", "/v1/agent/services", &service("").replace("10.42.1.1", "8.8.8.8")).await;
        assert_eq!(a.status, 400);
        assert!(a.error().contains("8.8.8.8") && a.error().contains("10.42.1.0/24"), "{}", a.error());
        let udp = service(r#","check":{"type":"tcp","interval":5000,"timeout":2000,"rise":1,"fall":2}"#)
            .replace(r#""tcp""#, r#""udp""#)
            .replacen(r#""type":"udp""#, r#""type":"tcp""#, 1);
        let a = ask("PUT", "/v1/agent/services", &udp).await;
        assert_eq!(a.status, 400, "{udp}");
        assert!(a.error().contains("TCP check on a UDP service"), "{}", a.error());
    }

    const HOST: (&str, &str) = ("Host", "127.0.0.1:9571");

    #[tokio::test]
    async fn rogue_write_without_a_configured_token_is_refused_and_reads_still_work() {
        let bearer = format!("Bearer {TOKEN}");
        let (a, stats) =
            ask_with("PUT", "/v1/agent/services", &service(""), &[HOST, ("Authorization", &bearer)], None)
                .await;
        assert_eq!(a.status, 403, "{}", a.body);
        assert!(
            a.error().contains("weft service add") && a.error().contains("metrics.api_token_file"),
            "{}",
            a.error()
        );
        assert_eq!(stats.api_token_refused, 1);
        let (a, _) = ask_with("DELETE", "/v1/agent/service/cache", "", &[HOST], None).await;
        assert_eq!(a.status, 403);
        let (a, stats) = ask_with("GET", "/v1/agent/services", "", &[HOST], None).await;
        assert_eq!((a.status, stats.api_token_refused), (200, 0), "{}", a.body);
    }

    #[tokio::test]
    async fn rogue_write_without_or_with_a_wrong_token_is_refused() {
        for auth in [None, Some("Bearer test-token-0123456788"), Some("Bearer test"), Some(TOKEN)] {
            let mut headers = vec![HOST];
            headers.extend(auth.map(|a| ("Authorization", a)));
            let (a, stats) = ask_with("PUT", "/v1/agent/services", &service(""), &headers, Some(TOKEN)).await;
            assert_eq!(a.status, 401, "{auth:?}: {}", a.body);
            assert_eq!(a.header("www-authenticate"), Some("Bearer"));
            assert!(a.error().contains("Authorization: Bearer"), "{}", a.error());
            assert_eq!(stats.api_token_refused, 1);
        }
        let bearer = format!("Bearer {TOKEN}");
        let (a, stats) = ask_with(
            "PUT",
            "/v1/agent/services",
            &service(""),
            &[HOST, ("Authorization", &bearer)],
            Some(TOKEN),
        )
        .await;
        assert_eq!((a.status, stats.api_token_refused), (201, 0), "{}", a.body);
        let (a, _) = ask_with("GET", "/v1/agent/services", "", &[HOST], Some(TOKEN)).await;
        assert_eq!(a.status, 200, "reads need no token");
    }

    #[tokio::test]
    async fn rogue_host_header_is_refused_on_every_route() {
        let bearer = format!("Bearer {TOKEN}");
        for (method, path) in [
            ("GET", "/metrics"),
            ("GET", "/v1/agent/services"),
            ("GET", "/"),
            ("PUT", "/v1/agent/services"),
            ("GET", "/nope"),
        ] {
            for host in
                [Some("evil.example"), Some("evil.example:9571"), Some("127.0.0.1.evil.example"), None]
            {
                let mut headers = vec![("Authorization", bearer.as_str())];
                headers.extend(host.map(|h| ("Host", h)));
                let (a, stats) = ask_with(method, path, &service(""), &headers, Some(TOKEN)).await;
                assert_eq!(a.status, 421, "{method} {path} Host {host:?}: {}", a.body);
                assert!(a.error().contains("DNS rebinding"), "{}", a.error());
                assert_eq!((stats.api_host_refused, stats.api_token_refused), (1, 0));
            }
        }
        for host in ["localhost:9571", "[::1]:9571", "weft-h1.example", "10.200.0.1:9571"] {
            let (a, _) = ask_with("GET", "/v1/agent/services", "", &[("Host", host)], Some(TOKEN)).await;
            assert_eq!(a.status, 200, "{host}: {}", a.body);
        }
    }

    #[tokio::test]
    async fn a_good_definition_is_registered() {
        let a = ask("PUT", "/v1/agent/services", &service(r#","tags":["v1"]"#)).await;
        assert_eq!(a.status, 201, "{}", a.body);
        assert_eq!(a.body, json!({"id": "cache/10.42.1.1:6379/tcp"}));
        let a = ask("GET", "/v1/status", "").await;
        assert_eq!(a.status, 503, "no engine here");
        a.error();
    }
}
