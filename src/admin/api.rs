//! The HTTP routes: the JSON admin API under `/api/v1` (bearer token required) and
//! `/metrics` (open, read-only).
//!
//! Routes, all answering JSON (errors as `{"error": "..."}` with 400, 401, 404 or 500):
//!
//! | method and path | what |
//! | --- | --- |
//! | `GET /api/v1/state` | node name, version, uptime, listener addresses, counters |
//! | `GET /api/v1/accounts` | `{"accounts": [{"username", "rules"}]}` |
//! | `GET /api/v1/accounts/{username}` | one account (never its hash) |
//! | `PUT /api/v1/accounts/{username}` | body `{"password"?, "rules"?}`: create (201) or change (200) |
//! | `DELETE /api/v1/accounts/{username}` | 204, or 404 |
//! | `GET /api/v1/acl` | `{"acl": [{"network", "allow"}]}` |
//! | `PUT /api/v1/acl` | body `{"network": "10.0.0.0/8", "allow": true}` |
//! | `DELETE /api/v1/acl?network=...` | 204, or 404 |
//! | `GET /api/v1/acl/lookup?ip=...` | `{"ip", "verdict": "allow" / "deny" / null}` |
//! | `POST /api/v1/tls/reload` | `{"reloaded": true}`, or false when TLS is off |
//!
//! Handlers never panic: bad input is a 400, and the slow parts (password hashing, reading
//! certificate files) run on the blocking pool with `web::block`.

use super::{prometheus, token, AdminState, Change};
use crate::auth::{AccountError, AclRecord, AclVerdict, IpNet, TopicRule};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, HttpResponse, ResponseError};
use serde::Deserialize;
use serde_json::json;
use slog::{info, warn};
use std::net::IpAddr;

/// Largest request body accepted, in bytes.
pub const BODY_LIMIT: usize = 64 * 1024;

/// An API error: its status and a message for the `{"error": ...}` body.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No `Authorization: Bearer` header, or the wrong token (401).
    #[error("missing or wrong admin token (send `Authorization: Bearer <token>`)")]
    Unauthorized,
    /// The request is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// The account, entry or route does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The node failed to do what was asked (500).
    #[error("{0}")]
    Internal(String),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let ApiError::Unauthorized = self {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.json(json!({ "error": self.to_string() }))
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::InvalidUsername(_) | AccountError::InvalidPassword => {
                ApiError::BadRequest(e.to_string())
            }
            AccountError::NotFound(_) => ApiError::NotFound(e.to_string()),
            AccountError::Hash(_) => ApiError::Internal(e.to_string()),
        }
    }
}

/// Registers every route and the extractor limits on an `App`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let bad =
        |e: &dyn std::fmt::Display| actix_web::Error::from(ApiError::BadRequest(e.to_string()));
    cfg.app_data(
        web::JsonConfig::default()
            .limit(BODY_LIMIT)
            .error_handler(move |e, _| bad(&e)),
    )
    .app_data(web::PayloadConfig::new(BODY_LIMIT))
    .app_data(web::QueryConfig::default().error_handler(move |e, _| bad(&e)))
    .app_data(web::PathConfig::default().error_handler(move |e, _| bad(&e)))
    .route("/metrics", web::get().to(metrics))
    .service(
        web::scope("/api")
            .wrap(from_fn(require_token))
            .service(
                web::scope("/v1")
                    .service(resource("/state").route(web::get().to(state)))
                    .service(resource("/accounts").route(web::get().to(list_accounts)))
                    .service(
                        resource("/accounts/{username}")
                            .route(web::get().to(get_account))
                            .route(web::put().to(put_account))
                            .route(web::delete().to(delete_account)),
                    )
                    .service(
                        resource("/acl")
                            .route(web::get().to(list_acl))
                            .route(web::put().to(put_acl))
                            .route(web::delete().to(delete_acl)),
                    )
                    .service(resource("/acl/lookup").route(web::get().to(lookup_acl)))
                    .service(resource("/tls/reload").route(web::post().to(reload_tls)))
                    .default_service(web::to(not_found)),
            )
            .default_service(web::to(not_found)),
    );
}

/// Lets a request into `/api` only with `Authorization: Bearer <token>`.
async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = req
        .app_data::<web::Data<AdminState>>()
        .ok_or_else(|| ApiError::Internal("admin state missing".into()))?;
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let authorized = presented.is_some_and(|t| token::matches(&state.token, t));
    if !authorized {
        let peer = req.peer_addr().map(|a| a.to_string()).unwrap_or_default();
        warn!(state.log, "admin API request refused: bad token";
            "peer" => peer, "path" => req.path().to_string());
        return Err(ApiError::Unauthorized.into());
    }
    next.call(req).await
}

/// A resource that answers a method it has no route for with a JSON 405.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(|| async {
        HttpResponse::MethodNotAllowed()
            .json(json!({ "error": "method not allowed on this API route" }))
    }))
}

async fn not_found() -> HttpResponse {
    ApiError::NotFound("no such API route".into()).error_response()
}

/// `GET /metrics`.
async fn metrics(state: web::Data<AdminState>) -> HttpResponse {
    let text = prometheus::render(&state.metrics.snapshot(), uptime(&state));
    HttpResponse::Ok()
        .content_type(prometheus::CONTENT_TYPE)
        .body(text)
}

fn uptime(state: &AdminState) -> u64 {
    state.started.elapsed().as_secs()
}

/// `GET /api/v1/state`.
async fn state(state: web::Data<AdminState>) -> HttpResponse {
    let m = state.metrics.snapshot();
    let l = state.listeners;
    HttpResponse::Ok().json(json!({
        "node": state.node,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": uptime(&state),
        "listeners": {
            "mqtt": l.mqtt.to_string(),
            "mqtts": l.mqtts.map(|a| a.to_string()),
            "http": l.http.to_string(),
        },
        "metrics": {
            "connections": m.connections,
            "connections_parked": m.parked,
            "sessions": m.sessions,
            "sessions_dormant": m.sessions_dormant,
            "topics": m.topics,
            "subscriptions": m.subscriptions,
            "retained": m.retained,
            "queued": m.queued,
            "publish_in": m.publish_in,
            "publish_out": m.publish_out,
            "dropped": m.dropped,
        },
        "accounts": state.security.accounts().len(),
        "acl_entries": state.security.acl().len(),
    }))
}

/// `GET /api/v1/accounts`.
async fn list_accounts(state: web::Data<AdminState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "accounts": state.security.accounts() }))
}

/// `GET /api/v1/accounts/{username}`.
async fn get_account(
    state: web::Data<AdminState>,
    username: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let username = username.into_inner();
    match state.security.account(&username) {
        Some(info) => Ok(HttpResponse::Ok().json(info)),
        None => Err(AccountError::NotFound(username).into()),
    }
}

/// Body of `PUT /api/v1/accounts/{username}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountBody {
    /// New password; without it only the rules change (the account must exist).
    password: Option<String>,
    /// New topic rules; without them an existing account keeps its rules.
    rules: Option<Vec<String>>,
}

/// `PUT /api/v1/accounts/{username}`.
async fn put_account(
    state: web::Data<AdminState>,
    username: web::Path<String>,
    body: web::Json<AccountBody>,
) -> Result<HttpResponse, ApiError> {
    let username = username.into_inner();
    let AccountBody { password, rules } = body.into_inner();
    let rules = rules
        .map(|texts| {
            texts
                .iter()
                .map(|t| t.parse::<TopicRule>())
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let existing = state.security.account(&username);
    let record = match (password, rules) {
        (Some(password), rules) => {
            let rules = rules
                .or_else(|| existing.as_ref().map(|a| a.rules.clone()))
                .unwrap_or_default();
            let security = state.security.clone();
            let name = username.clone();
            web::block(move || security.set_account(&name, password.as_bytes(), rules))
                .await
                .map_err(|e| ApiError::Internal(format!("password hashing: {e}")))??
        }
        (None, Some(rules)) => state.security.set_rules(&username, rules)?,
        (None, None) => {
            return Err(ApiError::BadRequest(
                "the body needs a \"password\", \"rules\" or both".into(),
            ))
        }
    };
    state
        .persist(Change::AccountSet {
            username: username.clone(),
            record: record.clone(),
        })
        .await?;
    let created = existing.is_none();
    info!(state.log, "account set through the admin API";
        "username" => &username, "created" => created, "rules" => record.rules.len());
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(json!({
        "username": username,
        "rules": record.rules,
        "created": created,
    })))
}

/// `DELETE /api/v1/accounts/{username}`.
async fn delete_account(
    state: web::Data<AdminState>,
    username: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let username = username.into_inner();
    if !state.security.delete_account(&username) {
        return Err(AccountError::NotFound(username).into());
    }
    state
        .persist(Change::AccountDeleted {
            username: username.clone(),
        })
        .await?;
    info!(state.log, "account deleted through the admin API"; "username" => &username);
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /api/v1/acl`.
async fn list_acl(state: web::Data<AdminState>) -> HttpResponse {
    let entries: Vec<_> = state
        .security
        .acl()
        .into_iter()
        .map(|(net, verdict)| acl_entry(&net, verdict))
        .collect();
    HttpResponse::Ok().json(json!({ "acl": entries }))
}

fn acl_entry(net: &IpNet, verdict: AclVerdict) -> serde_json::Value {
    json!({ "network": net.to_string(), "allow": verdict == AclVerdict::Allow })
}

/// Body of `PUT /api/v1/acl`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AclBody {
    /// Address or CIDR range.
    network: String,
    /// `true`: connect without credentials; `false`: closed at accept.
    allow: bool,
}

fn parse_net(text: &str) -> Result<IpNet, ApiError> {
    text.parse::<IpNet>()
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// `PUT /api/v1/acl`.
async fn put_acl(
    state: web::Data<AdminState>,
    body: web::Json<AclBody>,
) -> Result<HttpResponse, ApiError> {
    let net = parse_net(&body.network)?;
    let verdict = if body.allow {
        AclVerdict::Allow
    } else {
        AclVerdict::Deny
    };
    let record: AclRecord = state.security.set_acl(net, verdict);
    state
        .persist(Change::AclSet {
            network: net,
            record,
        })
        .await?;
    info!(state.log, "ACL entry set through the admin API";
        "network" => %net, "verdict" => %verdict);
    Ok(HttpResponse::Ok().json(acl_entry(&net, verdict)))
}

/// Query of `DELETE /api/v1/acl`.
#[derive(Debug, Deserialize)]
struct NetworkQuery {
    /// Address or CIDR range.
    network: String,
}

/// `DELETE /api/v1/acl?network=...`.
async fn delete_acl(
    state: web::Data<AdminState>,
    query: web::Query<NetworkQuery>,
) -> Result<HttpResponse, ApiError> {
    let net = parse_net(&query.network)?;
    if !state.security.delete_acl(&net) {
        return Err(ApiError::NotFound(format!("no ACL entry for {net}")));
    }
    state.persist(Change::AclDeleted { network: net }).await?;
    info!(state.log, "ACL entry removed through the admin API"; "network" => %net);
    Ok(HttpResponse::NoContent().finish())
}

/// Query of `GET /api/v1/acl/lookup`.
#[derive(Debug, Deserialize)]
struct IpQuery {
    /// An address.
    ip: String,
}

/// `GET /api/v1/acl/lookup?ip=...`.
async fn lookup_acl(
    state: web::Data<AdminState>,
    query: web::Query<IpQuery>,
) -> Result<HttpResponse, ApiError> {
    let ip: IpAddr = query
        .ip
        .trim()
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("`{}` is not an IP address", query.ip)))?;
    let verdict = state.security.acl_lookup(ip);
    Ok(HttpResponse::Ok().json(json!({ "ip": ip.to_string(), "verdict": verdict })))
}

/// `POST /api/v1/tls/reload`.
async fn reload_tls(state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let Some(context) = state.tls.clone() else {
        return Ok(HttpResponse::Ok().json(json!({ "reloaded": false })));
    };
    let result = web::block(move || context.reload())
        .await
        .map_err(|e| ApiError::Internal(format!("TLS reload: {e}")))?;
    match result {
        Ok(()) => {
            info!(state.log, "TLS certificate reloaded through the admin API");
            Ok(HttpResponse::Ok().json(json!({ "reloaded": true })))
        }
        Err(e) => Err(ApiError::Internal(format!(
            "TLS reload failed, the old certificate stays in use: {e}"
        ))),
    }
}
