//! A **stand-in for Elasticsearch**, for benchmarks only: it indexes nothing. It answers every
//! `_bulk` request (`/_bulk`, `/{index}/_bulk`, POST or PUT) at once with one success item per
//! action, in order, in Elasticsearch's response shape, so that a benchmark of Vigil's drop-in
//! `_bulk` endpoint pointed at it measures Vigil's own ceiling (parse, route, score, rewrite,
//! forward, merge) with an upstream that costs (almost) nothing. `GET /` answers a minimal
//! cluster banner; everything else is 404. It never stores, checks or echoes documents, and
//! is not a test double for Elasticsearch's behaviour: tests use the real Elasticsearch.
//!
//! ```sh
//! cargo run --release --example null_es -- [ADDR]   # default 127.0.0.1:9290
//! VIGIL_ES_URL=http://127.0.0.1:9290 target/release/vigil serve
//! ```
//!
//! It parses only what it needs: each action line's op type, `_index` and `_id` (the request's
//! path index when the line has none); a source line follows every action except `delete`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    items: AtomicU64,
}

type Shared = Arc<Counters>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9290".into())
        .parse()?;
    if !addr.ip().is_loopback() {
        return Err("null_es listens on loopback only".into());
    }
    let counters: Shared = Arc::default();
    let app = Router::new()
        .route("/", get(banner))
        .route("/_bulk", post(bulk_root).put(bulk_root))
        .route("/{index}/_bulk", post(bulk_index).put(bulk_index))
        .route("/_null_es/stats", get(stats))
        .with_state(counters)
        .layer(axum::extract::DefaultBodyLimit::max(512 << 20));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("null_es (a stand-in for Elasticsearch that indexes nothing) on http://{addr}");
    axum::serve(listener, app).await?;
    Ok(())
}

async fn banner() -> Response {
    with_product(axum::Json(json!({
        "name": "null_es",
        "cluster_name": "null_es",
        "version": {"number": "8.19.0", "build_flavor": "default"},
        "tagline": "You Know, for Search (stand-in: indexes nothing)",
    })))
}

async fn stats(State(c): State<Shared>) -> axum::Json<Value> {
    axum::Json(json!({
        "requests": c.requests.load(Ordering::Relaxed),
        "items": c.items.load(Ordering::Relaxed),
    }))
}

async fn bulk_root(State(c): State<Shared>, body: Bytes) -> Response {
    answer(&c, None, &body)
}

async fn bulk_index(State(c): State<Shared>, Path(index): Path<String>, body: Bytes) -> Response {
    answer(&c, Some(&index), &body)
}

fn with_product(r: impl IntoResponse) -> Response {
    let mut r = r.into_response();
    r.headers_mut().insert(
        "x-elastic-product",
        HeaderValue::from_static("Elasticsearch"),
    );
    r
}

fn answer(c: &Counters, default_index: Option<&str>, body: &[u8]) -> Response {
    let items = match items(default_index, body) {
        Ok(items) => items,
        Err(reason) => {
            let error = json!({
                "error": {"type": "illegal_argument_exception", "reason": reason},
                "status": 400,
            });
            return with_product((StatusCode::BAD_REQUEST, axum::Json(error)));
        }
    };
    c.requests.fetch_add(1, Ordering::Relaxed);
    c.items.fetch_add(items.len() as u64, Ordering::Relaxed);
    let body = json!({"took": 0, "errors": false, "items": items});
    let mut r = with_product(axum::Json(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// One success item per action line, in order.
fn items(default_index: Option<&str>, body: &[u8]) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    let mut lines = body
        .split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace));
    let mut seq = 0u64;
    while let Some(line) = lines.next() {
        let action: Value = serde_json::from_slice(line)
            .map_err(|e| format!("action line {}: {e}", out.len() + 1))?;
        let Some((op, meta)) = action.as_object().and_then(|o| o.iter().next()) else {
            return Err("action line is not an object with one key".into());
        };
        let op = op.as_str();
        if op != "delete" {
            lines.next();
        }
        let index = meta
            .get("_index")
            .and_then(Value::as_str)
            .or(default_index)
            .unwrap_or("null");
        seq += 1;
        let id = meta
            .get("_id")
            .and_then(Value::as_str)
            .map_or_else(|| format!("null-{seq}"), str::to_string);
        let (result, status) = match op {
            "index" | "create" => ("created", 201),
            "delete" => ("not_found", 404),
            _ => ("updated", 200),
        };
        out.push(json!({ op: {
            "_index": index,
            "_id": id,
            "_version": 1,
            "result": result,
            "_shards": {"total": 1, "successful": 1, "failed": 0},
            "_seq_no": seq,
            "_primary_term": 1,
            "status": status,
        }}));
    }
    Ok(out)
}
