//! One typed client of the HTTP API. The typed requests assert the answer
//! the contract promises (and panic with the body when it differs); the
//! raw ones return the response, for tests of refusals.

use crate::games::{small_game, ten_second_game};
use crate::process::{logs, Proc};
use crate::sse::SseReader;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The password of every test user.
pub const PASSWORD: &str = "correct horse battery";
/// How long accepted games may take to show up processed.
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the feed or `/readyz` is polled.
pub const POLL: Duration = Duration::from_millis(200);
/// The time limit of a typed request: a hung server fails the test rather
/// than hanging it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// The answer to an accepted game.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub game_id: String,
    pub event_id: String,
}

/// Requests to one server at `base` (`http://HOST:PORT`).
#[derive(Debug, Clone)]
pub struct Api {
    /// No overall time limit (event streams stay open); the typed requests
    /// set their own.
    pub client: reqwest::Client,
    pub base: String,
}

impl Api {
    pub fn new(base: &str) -> Api {
        Api {
            client: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()
                .expect("a client"),
            base: base.to_owned(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    // -- raw requests --------------------------------------------------

    /// GET `path` with a token.
    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// A request with a token and, if given, a JSON body (for the routes
    /// without their own helper: POST, PATCH, DELETE with a token).
    pub async fn send(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .request(method.clone(), self.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(body);
        }
        req.send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// POST a JSON body without a token.
    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// Uploads a game as JSON.
    pub async fn post_game(
        &self,
        token: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.post_game_with(token, &[], body).await
    }

    /// Uploads a game with an `Idempotency-Key`.
    pub async fn post_game_keyed(
        &self,
        token: &str,
        key: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.post_game_with(token, &[("idempotency-key", key)], body)
            .await
    }

    /// Uploads a game as JSON with more headers (`content-encoding: gzip`
    /// for a compressed body).
    pub async fn post_game_with(
        &self,
        token: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.post_game_as(token, "application/json", headers, body)
            .await
    }

    /// Uploads a game as CBOR (`application/cbor`), with more headers.
    pub async fn post_cbor_game(
        &self,
        token: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.post_game_as(token, "application/cbor", headers, body)
            .await
    }

    async fn post_game_as(
        &self,
        token: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url("/v1/games"))
            .bearer_auth(token)
            .header("content-type", content_type);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST /v1/games: {e}"))
    }

    /// `POST /v1/token/refresh` with a refresh token.
    pub async fn refresh(&self, refresh_token: &str) -> reqwest::Response {
        self.post_json(
            "/v1/token/refresh",
            &json!({ "refresh_token": refresh_token }),
        )
        .await
    }

    // -- accounts ------------------------------------------------------

    /// Registers `username` (asserting the 201); returns its user_id.
    pub async fn register(&self, username: &str) -> Uuid {
        let r = self
            .post_json(
                "/v1/users",
                &json!({"username": username, "password": PASSWORD}),
            )
            .await;
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        assert_eq!(status, 201, "register: {body}");
        let v: Value = serde_json::from_str(&body).expect("a JSON registration answer");
        v["user_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no user_id in {v}"))
    }

    /// Logs in (asserting the 200); returns the whole token answer.
    pub async fn login(&self, username: &str) -> Value {
        let r = self
            .post_json(
                "/v1/login",
                &json!({"username": username, "password": PASSWORD}),
            )
            .await;
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        assert_eq!(status, 200, "login: {body}");
        serde_json::from_str(&body).expect("a JSON login answer")
    }

    /// Logs in; returns the access token.
    pub async fn access_token(&self, username: &str) -> String {
        let v = self.login(username).await;
        v["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token in {v}"))
            .to_owned()
    }

    /// Registers and logs in a new user; returns the access token.
    pub async fn user(&self, username: &str) -> String {
        self.register(username).await;
        self.access_token(username).await
    }

    // -- therapists ----------------------------------------------------

    /// A therapist makes an invite code (asserting the 201).
    pub async fn invite(&self, therapist_token: &str) -> String {
        let r = self
            .send(reqwest::Method::POST, therapist_token, "/v1/invites", None)
            .await;
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        assert_eq!(status, 201, "POST /v1/invites: {body}");
        let v: Value = serde_json::from_str(&body).expect("a JSON invite");
        v["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no code in {v}"))
            .to_owned()
    }

    /// A patient redeems a code (asserting the 201); the link.
    pub async fn redeem(&self, patient_token: &str, code: &str) -> Value {
        let r = self
            .send(
                reqwest::Method::POST,
                patient_token,
                "/v1/therapists",
                Some(&json!({ "code": code })),
            )
            .await;
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        assert_eq!(status, 201, "POST /v1/therapists: {body}");
        serde_json::from_str(&body).expect("a JSON link")
    }

    /// Links a patient to a therapist through an invite; the link.
    pub async fn link(&self, therapist_token: &str, patient_token: &str) -> Value {
        let code = self.invite(therapist_token).await;
        self.redeem(patient_token, &code).await
    }

    // -- games ---------------------------------------------------------

    /// Uploads [`small_game`]`(seed)` (asserting the 202); its game_id.
    pub async fn submit(&self, token: &str, seed: u64) -> Uuid {
        let accepted = self.submit_game(token, small_game(seed)).await;
        accepted.game_id.parse().expect("a UUID game_id")
    }

    /// Posts a game, asserting the 202 and its shape (status `queued`, an
    /// event_id, the game's `Location`).
    pub async fn submit_game(&self, token: &str, body: String) -> Accepted {
        let r = self
            .client
            .post(self.url("/v1/games"))
            .bearer_auth(token)
            .header("Content-Type", "application/json")
            .body(body)
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .expect("POST /v1/games");
        let status = r.status();
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = r.text().await.unwrap_or_default();
        assert_eq!(status, 202, "submit: {text}");
        let v: Value = serde_json::from_str(&text).expect("a JSON 202 body");
        assert_eq!(v["status"], "queued", "{v}");
        let field = |k: &str| {
            v[k].as_str()
                .unwrap_or_else(|| panic!("no {k} in {v}"))
                .to_owned()
        };
        let accepted = Accepted {
            game_id: field("game_id"),
            event_id: field("event_id"),
        };
        assert_eq!(
            location.as_deref(),
            Some(format!("/v1/games/{}", accepted.game_id).as_str())
        );
        accepted
    }

    /// Submits the [`ten_second_game`]s of `seeds` at once; returns their
    /// game_ids.
    pub async fn submit_many(
        self: &Arc<Self>,
        token: &str,
        seeds: std::ops::Range<u64>,
    ) -> Vec<String> {
        let mut tasks = tokio::task::JoinSet::new();
        for seed in seeds {
            let api = self.clone();
            let token = token.to_owned();
            tasks
                .spawn(async move { api.submit_game(&token, ten_second_game(seed)).await.game_id });
        }
        let mut ids = Vec::new();
        while let Some(r) = tasks.join_next().await {
            ids.push(r.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())));
        }
        ids
    }

    /// GET `path` with a token, asserting 200; the JSON answer.
    pub async fn read(&self, token: &str, path: &str) -> Value {
        let r = self.get(token, path).await;
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"))
    }

    /// One game (asserting the 200).
    pub async fn game(&self, token: &str, game_id: &str) -> Value {
        self.read(token, &format!("/v1/games/{game_id}")).await
    }

    /// Polls the game until it has `status` (at most 30 s).
    pub async fn wait_for(&self, token: &str, game_id: Uuid, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v: Value = self
                .get(token, &format!("/v1/games/{game_id}"))
                .await
                .json()
                .await
                .expect("a JSON game");
            if v["status"] == status {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "game {game_id} never became {status}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    // -- the sync feed -------------------------------------------------

    /// One page of `/v1/sync` (limit 1000): the status and the body.
    pub async fn sync_page(&self, token: &str, since: Option<&str>) -> (u16, Value) {
        let mut req = self
            .client
            .get(self.url("/v1/sync"))
            .bearer_auth(token)
            .timeout(REQUEST_TIMEOUT)
            .query(&[("limit", "1000")]);
        if let Some(since) = since {
            req = req.query(&[("since", since)]);
        }
        let r = req.send().await.expect("GET /v1/sync");
        let status = r.status().as_u16();
        let body = r.json().await.expect("a JSON sync answer");
        (status, body)
    }

    /// The changes after `since`, following `cursor` until a page is empty.
    /// Returns them and the cursor to continue from.
    pub async fn sync_from(
        &self,
        token: &str,
        since: Option<String>,
    ) -> (Vec<Value>, Option<String>) {
        let mut cursor = since;
        let mut changes = Vec::new();
        loop {
            let (status, page) = self.sync_page(token, cursor.as_deref()).await;
            assert_eq!(status, 200, "sync: {page}");
            let batch = page["changes"]
                .as_array()
                .unwrap_or_else(|| panic!("no changes in {page}"));
            if batch.is_empty() {
                return (changes, cursor);
            }
            changes.extend(batch.iter().cloned());
            cursor = Some(
                page["cursor"]
                    .as_str()
                    .unwrap_or_else(|| panic!("a non-empty page without cursor: {page}"))
                    .to_owned(),
            );
        }
    }

    /// The whole feed, read from the start.
    pub async fn feed(&self, token: &str) -> Vec<Value> {
        self.sync_from(token, None).await.0
    }

    /// Polls the sync feed until every game of `ids` has a change (processed
    /// or failed), at most `timeout`. Returns the whole feed read. On
    /// failure, shows the logs of `procs`.
    pub async fn wait_finished(
        &self,
        token: &str,
        ids: &[String],
        timeout: Duration,
        procs: &[&Proc],
    ) -> Vec<Value> {
        self.poll_feed(token, ids, timeout, procs, false).await
    }

    /// Polls the sync feed until every game of `ids` is `processed`, at
    /// most [`PROCESS_TIMEOUT`]; a `failed` change is a panic at once.
    /// Returns the whole feed read.
    pub async fn wait_processed(&self, token: &str, ids: &[String], procs: &[&Proc]) -> Vec<Value> {
        self.poll_feed(token, ids, PROCESS_TIMEOUT, procs, true)
            .await
    }

    async fn poll_feed(
        &self,
        token: &str,
        ids: &[String],
        timeout: Duration,
        procs: &[&Proc],
        processed_only: bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut feed = Vec::new();
        let mut cursor = None;
        loop {
            let (changes, next) = self.sync_from(token, cursor).await;
            cursor = next;
            feed.extend(changes);
            if processed_only {
                if let Some(failed) = feed.iter().find(|c| c["status"] == "failed") {
                    panic!("a game failed: {failed}\n{}", logs(procs));
                }
            }
            let finished: HashSet<&str> = feed
                .iter()
                .filter(|c| !processed_only || c["status"] == "processed")
                .filter_map(|c| c["game_id"].as_str())
                .collect();
            let missing: Vec<&String> = ids
                .iter()
                .filter(|id| !finished.contains(id.as_str()))
                .collect();
            if missing.is_empty() {
                return feed;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} of {} accepted games not {} after {timeout:?}: {missing:?}\n{}",
                    missing.len(),
                    ids.len(),
                    if processed_only {
                        "processed"
                    } else {
                        "finished"
                    },
                    logs(procs)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Each game of `ids` reads `processed` with the metrics of a 10 s
    /// game and no error.
    pub async fn assert_processed_games(&self, token: &str, ids: &[String]) {
        for id in ids {
            let game = self.game(token, id).await;
            assert_eq!(game["status"], "processed", "{id}: {game}");
            assert_eq!(game["metrics"]["duration_s"], 10.0, "{id}: {game}");
            assert!(game.get("error").is_none(), "{id}: {game}");
        }
    }

    /// Waits until every game of `ids` is processed, then checks that the
    /// whole feed has each of them exactly once and nothing else, and that
    /// each game reads `processed` with the metrics of a 10 s game.
    pub async fn assert_all_processed_once(&self, token: &str, ids: &[String], procs: &[&Proc]) {
        let feed = self.wait_finished(token, ids, PROCESS_TIMEOUT, procs).await;
        if let Some(failed) = feed.iter().find(|c| c["status"] != "processed") {
            panic!("a game was not processed: {failed}\n{}", logs(procs));
        }
        // Read again from the start: what a phone that was away sees.
        let feed = self.feed(token).await;
        let counts = occurrences(&feed);
        for id in ids {
            assert_eq!(counts.get(id), Some(&1), "game {id} in the feed: {feed:#?}");
        }
        assert_eq!(
            feed.len(),
            ids.len(),
            "the feed has only the accepted games, once each: {feed:#?}"
        );
        self.assert_processed_games(token, ids).await;
    }

    // -- the event stream ----------------------------------------------

    /// Opens `GET /v1/events` (with `Last-Event-ID` if given); asserts the
    /// 200 and the content type.
    pub async fn events(&self, token: &str, last_event_id: Option<&str>) -> SseReader {
        let mut req = self
            .client
            .get(self.url("/v1/events"))
            .bearer_auth(token)
            .header("Accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let r = tokio::time::timeout(REQUEST_TIMEOUT, req.send())
            .await
            .expect("GET /v1/events answers within 20 s")
            .expect("GET /v1/events");
        let status = r.status();
        let content_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if status != 200 {
            panic!(
                "GET /v1/events: {status}: {}",
                r.text().await.unwrap_or_default()
            );
        }
        assert!(
            content_type.starts_with("text/event-stream"),
            "GET /v1/events content type {content_type:?}"
        );
        SseReader::new(r)
    }

    // -- operations ----------------------------------------------------

    /// The `/readyz` status, or `None` when the request fails.
    pub async fn readyz(&self) -> Option<u16> {
        let r = self
            .client
            .get(self.url("/readyz"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        Some(r.status().as_u16())
    }

    /// Polls `/readyz` until it answers `want`; returns how long it took.
    pub async fn wait_readyz(&self, want: u16, timeout: Duration, procs: &[&Proc]) -> Duration {
        let t0 = Instant::now();
        let mut last = None;
        while t0.elapsed() < timeout {
            last = self.readyz().await;
            if last == Some(want) {
                return t0.elapsed();
            }
            tokio::time::sleep(POLL).await;
        }
        panic!(
            "{}/readyz did not answer {want} within {timeout:?} (last: {last:?})\n{}",
            self.base,
            logs(procs)
        );
    }

    /// The text of `/metrics` (asserting the 200).
    pub async fn metrics(&self) -> String {
        let r = self
            .client
            .get(self.url("/metrics"))
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(r.status(), 200);
        r.text().await.expect("the metrics text")
    }

    /// The served OpenAPI document (asserting the 200).
    pub async fn openapi(&self) -> Value {
        let r = self
            .client
            .get(self.url("/openapi.json"))
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .expect("GET /openapi.json");
        assert_eq!(r.status(), 200);
        r.json().await.expect("a JSON document")
    }
}

/// How often each game appears in a feed.
pub fn occurrences(feed: &[Value]) -> HashMap<String, usize> {
    let mut n = HashMap::new();
    for c in feed {
        let id = c["game_id"]
            .as_str()
            .unwrap_or_else(|| panic!("a change without game_id: {c}"));
        *n.entry(id.to_owned()).or_insert(0) += 1;
    }
    n
}

/// Asserts a problem+json answer with `status`, naming `field` if given.
/// The claims of an access token: its payload (the middle, base64url part)
/// as JSON, read without checking the signature (the client's view).
pub fn token_claims(access_token: &str) -> Value {
    use base64::Engine;
    let payload = access_token
        .split('.')
        .nth(1)
        .unwrap_or_else(|| panic!("not a JWT: {access_token}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("a base64url payload");
    serde_json::from_slice(&bytes).expect("a JSON payload")
}

pub async fn assert_problem(r: reqwest::Response, status: u16, field: Option<&str>) -> Value {
    assert_eq!(r.status(), status);
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(ct, "application/problem+json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], status);
    assert!(
        v["type"].as_str().unwrap().starts_with("urn:m2m:problem:"),
        "{v}"
    );
    assert!(v["title"].is_string(), "{v}");
    if let Some(field) = field {
        let fields: Vec<&str> = v["errors"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["field"].as_str()).collect())
            .unwrap_or_default();
        assert!(fields.contains(&field), "expected field {field} in {v}");
        assert!(
            v["detail"].as_str().unwrap().contains(field),
            "detail should name {field}: {v}"
        );
    }
    v
}
