//! HTTP ingest as a ticket system drives it: `conns` keep-alive connections, each posting
//! one event per request and waiting for its 202 (which comes after the commit), against
//! the real router and accept loop on a loopback port.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;

use super::common::Dist;
use crate::shell::engine::Engine;
use crate::shell::http::{self, AppState};

/// Post `total` single events over `conns` connections. Returns rate, latency and errors.
pub async fn run(eng: Arc<Engine>, conns: usize, total: usize) -> anyhow::Result<Value> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = http::router(AppState {
        engine: eng,
        tokens: Default::default(),
        metrics: None,
    });
    let (stop, rx) = watch::channel(false);
    let server = tokio::spawn(http::serve(listener, app, rx, Duration::from_secs(10)));
    let url = format!("http://{addr}/v1/events");
    let next = Arc::new(AtomicUsize::new(0));
    let at = chrono::Utc::now().to_rfc3339();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(30))
            .build()?;
        let (url, next, at) = (url.clone(), next.clone(), at.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let body = json!({
                    "id": format!("http-{i}"), "ticket": format!("H-{i}"), "type": "ticket.opened",
                    "at": at, "priority": "far", "category": "bench",
                });
                let t = Instant::now();
                let r = client.post(&url).json(&body).send().await;
                match r {
                    Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED => {
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::with_capacity(total);
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        lat.extend(l);
        errors += e;
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = stop.send(true);
    let _ = server.await;
    Ok(json!({
        "connections": conns,
        "events": total,
        "errors": errors,
        "events_per_s": (lat.len() as f64 / secs).round(),
        "latency_ms": Dist::of(lat),
    }))
}
