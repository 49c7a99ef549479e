//! The HTTP side: REST API, the dashboard's files, `/metrics`, `/healthz`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rumqttc::{AsyncClient, QoS};
use serde::Deserialize;
use serde_json::json;

use super::decode::Decoders;
use super::metrics::Metrics;
use super::store::{HumanMissing, Store};
use crate::human::view::Sampling;
use crate::human::ViewMode;
use crate::transport::topics::{Topics, SETTABLE};

pub struct AppState {
    pub prefix: String,
    pub store: Arc<Store>,
    pub metrics: Metrics,
    pub client: AsyncClient,
    pub bundles: Vec<String>,
    pub instance: String,
    pub decoders: Arc<Decoders>,
}

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const STYLE_CSS: &str = include_str!("dashboard/style.css");

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { static_file("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/app.js",
            get(|| async { static_file("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/style.css",
            get(|| async { static_file("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/devices", get(devices))
        .route("/api/devices/{id}", get(device))
        .route("/api/devices/{id}/latest.jpg", get(latest_jpg))
        .route("/api/devices/{id}/frames/{file}", get(frame_jpg))
        .route("/api/devices/{id}/detections", get(detections))
        .route("/api/devices/{id}/set", post(set))
        .with_state(state)
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn no_device(id: &str) -> Response {
    error(StatusCode::NOT_FOUND, format!("no device {id:?} known"))
}

async fn healthz(State(s): State<Arc<AppState>>) -> Response {
    let connected = s.metrics.mqtt_connected.get() == 1;
    let body = Json(json!({
        "instance": s.instance,
        "mqtt_connected": connected,
        "bundles": s.bundles,
    }));
    // Unhealthy while the broker is unreachable: this instance decodes nothing then.
    let status = if connected {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

async fn devices(State(s): State<Arc<AppState>>) -> Response {
    Json(s.store.devices()).into_response()
}

async fn device(State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match s.store.device(&id) {
        Some(d) => Json(d).into_response(),
        None => no_device(&id),
    }
}

async fn latest_jpg(State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let Some(view) = s.store.view(&id) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no picture of {id:?} decoded by this instance yet"),
        );
    };
    let seq = view.sequence;
    match tokio::task::spawn_blocking(move || view.jpeg()).await {
        Ok(Ok(jpg)) => {
            let mut r = ([(header::CONTENT_TYPE, "image/jpeg")], jpg).into_response();
            let h = r.headers_mut();
            h.insert("x-fchm-view", HeaderValue::from_static("features"));
            h.insert("x-fchm-sequence", HeaderValue::from(seq));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Ok(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding JPEG: {e}"),
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoder task: {e}"),
        ),
    }
}

#[derive(Debug, Deserialize)]
struct ViewQuery {
    /// `fast` (default) or `diffusion`.
    mode: Option<String>,
    /// Diffusion sampling steps (1..=50); default: the bundle's.
    steps: Option<usize>,
    /// Seed of the diffusion noise; the same seed gives the same picture.
    #[serde(default)]
    seed: u64,
}

/// Most sampling steps a request may ask for: each costs one denoiser pass.
const MAX_STEPS: usize = 50;

/// `GET /api/devices/{id}/frames/{seq}.jpg?mode=fast|diffusion`: the human
/// view of one frame, rendered from its machine and aux layers.
async fn frame_jpg(
    State(s): State<Arc<AppState>>,
    Path((id, file)): Path<(String, String)>,
    Query(q): Query<ViewQuery>,
) -> Response {
    let Some(seq) = file
        .strip_suffix(".jpg")
        .and_then(|n| n.parse::<u64>().ok())
    else {
        return error(
            StatusCode::NOT_FOUND,
            format!("{file:?}: expected <sequence>.jpg"),
        );
    };
    let mode = match q.mode.as_deref().unwrap_or("fast").parse::<ViewMode>() {
        Ok(m) => m,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if q.steps.is_some_and(|n| n == 0 || n > MAX_STEPS) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("steps: expected 1..={MAX_STEPS}"),
        );
    }
    if s.decoders.human().is_none() {
        return error(
            StatusCode::NOT_FOUND,
            "this server has no human-layer bundle (start it with --human-bundle DIR)",
        );
    }
    let (machine, aux) = match s.store.human_inputs(&id, seq) {
        Ok(p) => p,
        Err(HumanMissing::Device) => return no_device(&id),
        Err(HumanMissing::Aux) => {
            return error(
                StatusCode::NOT_FOUND,
                format!(
                    "no aux frame {seq} from {id:?} here: ask the device with POST /api/devices/{id}/set \
                     {{\"key\":\"aux\",\"value\":\"frame:{seq}\"}} while it still holds the frame"
                ),
            )
        }
        Err(HumanMissing::Machine) => {
            return error(
                StatusCode::NOT_FOUND,
                format!(
                    "machine frame {seq} of {id:?} was not decoded by this instance ({}) or has left its window",
                    s.instance
                ),
            )
        }
    };
    let sampling = Sampling {
        steps: q.steps,
        seed: q.seed,
    };
    let state = s.clone();
    let t0 = std::time::Instant::now();
    let rendered = tokio::task::spawn_blocking(move || {
        let img = super::human::render(&state.decoders, &machine, &aux, mode, sampling)
            .map_err(|e| e.to_string())?;
        super::view::encode_jpeg(&img).map_err(|e| format!("encoding JPEG: {e}"))
    })
    .await;
    match rendered {
        Ok(Ok(jpg)) => {
            s.metrics
                .human_views
                .with_label_values(&[mode.name()])
                .inc();
            s.metrics
                .human_render_seconds
                .observe(t0.elapsed().as_secs_f64());
            let mut r = ([(header::CONTENT_TYPE, "image/jpeg")], jpg).into_response();
            let h = r.headers_mut();
            h.insert("x-fchm-view", HeaderValue::from_static(mode.name()));
            h.insert("x-fchm-sequence", HeaderValue::from(seq));
            r
        }
        Ok(Err(e)) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("render task: {e}"),
        ),
    }
}

#[derive(Debug, Deserialize)]
struct Since {
    /// Frames with a sequence number above this one.
    #[serde(default)]
    since: u64,
}

async fn detections(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<Since>,
) -> Response {
    match s.store.frames_since(&id, q.since) {
        Some(frames) => Json(json!({ "device": id, "frames": frames })).into_response(),
        None => no_device(&id),
    }
}

#[derive(Debug, Deserialize)]
struct SetBody {
    key: String,
    value: String,
}

/// The longest value relayed; the device checks the value itself.
const MAX_VALUE_LEN: usize = 64;

/// Check a command before relaying it: the key must be one a device takes;
/// the value's meaning is the device's to judge (it refuses and counts bad
/// values, and its `state/<key>` shows what it applied).
pub fn check_set(key: &str, value: &str) -> Result<(), String> {
    if !SETTABLE.contains(&key) {
        return Err(format!(
            "unknown key {key:?}: expected one of {}",
            SETTABLE.join(", ")
        ));
    }
    let v = value.trim();
    if v.is_empty() || v.len() > MAX_VALUE_LEN || v.chars().any(char::is_control) {
        return Err(format!(
            "value {value:?}: expected 1..={MAX_VALUE_LEN} printable characters"
        ));
    }
    Ok(())
}

async fn set(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Json<SetBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if let Err(e) = check_set(&body.key, &body.value) {
        return error(StatusCode::BAD_REQUEST, e);
    }
    if s.store.device(&id).is_none() {
        return no_device(&id);
    }
    let topic = Topics::new(&s.prefix, &id).set(&body.key);
    let value = body.value.trim().to_owned();
    match s
        .client
        .publish(topic.clone(), QoS::AtLeastOnce, false, value.clone())
        .await
    {
        Ok(()) => {
            s.metrics
                .set_relayed
                .with_label_values(&[body.key.as_str()])
                .inc();
            (
                StatusCode::ACCEPTED,
                Json(json!({ "topic": topic, "value": value })),
            )
                .into_response()
        }
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("relaying to the broker: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_relays_only_known_keys_and_sane_values() {
        assert!(check_set("target_kbps", "400").is_ok());
        assert!(check_set("rate_mode", "auto").is_ok());
        assert!(check_set("bogus", "1").unwrap_err().contains("unknown key"));
        assert!(check_set("gain", "").is_err());
        assert!(check_set("gain", "1\n2").is_err());
        assert!(check_set("gain", &"9".repeat(65)).is_err());
    }
}
