//! `/api/v1/alerts` and `/api/v1/silences`, in Prometheus' envelope
//! (`{"status": "success", "data": …}`).

use std::time::SystemTime;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::{parse_duration, parse_time};
use crate::{Engine, Matcher, Silence};

type Reply = (StatusCode, Json<Value>);

fn ok(data: Value) -> Reply {
    (
        StatusCode::OK,
        Json(json!({"status": "success", "data": data})),
    )
}

fn error(code: StatusCode, message: impl std::fmt::Display) -> Reply {
    (
        code,
        Json(json!({"status": "error", "error": message.to_string()})),
    )
}

pub(crate) fn router(engine: Engine) -> Router {
    Router::new()
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/silences", get(silences).post(add_silence))
        .route("/api/v1/silences/{id}", delete(delete_silence))
        .with_state(engine)
}

async fn alerts(State(engine): State<Engine>) -> Reply {
    ok(json!({ "alerts": engine.firing() }))
}

async fn silences(State(engine): State<Engine>) -> Reply {
    let now = SystemTime::now();
    let list: Vec<Value> = engine
        .silences()
        .into_iter()
        .map(|s| {
            let state = if now < s.starts_at {
                "pending"
            } else if now < s.ends_at {
                "active"
            } else {
                "expired"
            };
            let mut v = serde_json::to_value(&s).unwrap_or_default();
            v["status"] = json!({ "state": state });
            v
        })
        .collect();
    ok(Value::Array(list))
}

/// A new silence: `endsAt` or `duration` (e.g. `2h`); `startsAt` defaults
/// to now.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewSilence {
    matchers: Vec<Matcher>,
    #[serde(default)]
    starts_at: Option<String>,
    #[serde(default)]
    ends_at: Option<String>,
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    created_by: String,
    #[serde(default)]
    comment: String,
    /// Alertmanager's clients send the id to update; ignored.
    #[serde(default)]
    #[allow(dead_code)]
    id: Option<String>,
}

async fn add_silence(
    State(engine): State<Engine>,
    body: Result<Json<NewSilence>, JsonRejection>,
) -> Reply {
    let Json(new) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let now = SystemTime::now();
    let starts_at = match new.starts_at.as_deref().map(parse_time).transpose() {
        Ok(t) => t.unwrap_or(now),
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("startsAt: {e}")),
    };
    let ends_at = match (new.ends_at.as_deref(), new.duration.as_deref()) {
        (Some(t), None) => parse_time(t).map_err(|e| format!("endsAt: {e}")),
        (None, Some(d)) => parse_duration(d)
            .map(|d| starts_at.max(now) + d)
            .map_err(|e| format!("duration: {e}")),
        _ => Err("give endsAt (RFC 3339) or duration (e.g. 2h), not both".into()),
    };
    let ends_at = match ends_at {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    // Bounded: the API is not a log.
    let comment: String = new.comment.chars().take(1000).collect();
    let created_by: String = new.created_by.chars().take(200).collect();
    let silence = Silence {
        id: String::new(),
        matchers: new.matchers,
        starts_at,
        ends_at,
        created_by,
        comment,
    };
    match engine.add_silence(silence) {
        Ok(id) => ok(json!({ "silenceID": id })),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn delete_silence(State(engine): State<Engine>, Path(id): Path<String>) -> Reply {
    match engine.delete_silence(&id) {
        Ok(true) => ok(Value::Null),
        Ok(false) => error(StatusCode::NOT_FOUND, format!("no silence {id}")),
        Err(e) => error(StatusCode::CONFLICT, e),
    }
}
