//! Submitting games: open loop (`--rate`) or closed loop (`--concurrency`).

use crate::config::Load;
use crate::pool::GamePool;
use crate::tracker::Tracker;
use crate::users::User;
use indicatif::ProgressBar;
use reqwest::header::{HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::{Client, StatusCode, Url};
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use uuid::Uuid;

/// Everything a submission needs; shared by all submitting tasks.
#[derive(Debug)]
pub(crate) struct Submitter {
    pub(crate) client: Client,
    /// `…/v1/games`, parsed once.
    pub(crate) url: Url,
    pub(crate) users: Vec<Arc<User>>,
    pub(crate) pool: GamePool,
    pub(crate) tracker: Arc<Tracker>,
    pub(crate) timeout: Duration,
    pub(crate) progress: ProgressBar,
}

/// When to stop submitting.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bound {
    pub(crate) games: Option<u64>,
    pub(crate) until: Option<Instant>,
}

impl Bound {
    fn allows(&self, n: u64, now: Instant) -> bool {
        self.games.is_none_or(|g| n < g) && self.until.is_none_or(|u| now < u)
    }
}

#[derive(Deserialize)]
struct Accepted {
    game_id: Uuid,
}

impl Submitter {
    /// Submits until `bound` is reached, then waits for the answers of the
    /// requests in flight.
    pub(crate) async fn run(self: Arc<Self>, load: Load, start: Instant, bound: Bound) {
        match load {
            Load::Concurrency(n) => self.closed_loop(n, bound).await,
            Load::Rate(r) => self.open_loop(r, start, bound).await,
        }
    }

    /// `n` workers, each sending its next game as soon as the previous one
    /// is answered.
    async fn closed_loop(self: Arc<Self>, n: usize, bound: Bound) {
        let next = Arc::new(AtomicU64::new(0));
        let mut workers = JoinSet::new();
        for _ in 0..n {
            let this = self.clone();
            let next = next.clone();
            workers.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let now = Instant::now();
                    if !bound.allows(i, now) {
                        break;
                    }
                    this.submit(i, now).await;
                }
            });
        }
        while workers.join_next().await.is_some() {}
    }

    /// One request every `1/rate` seconds on schedule, however long the
    /// answers take. The latency counts from the scheduled time, so a
    /// simulator (or connection pool) that falls behind shows in the
    /// latency instead of hiding it (no coordinated omission).
    async fn open_loop(self: Arc<Self>, rate: f64, start: Instant, bound: Bound) {
        let mut ticks = tokio::time::interval_at(start, Duration::from_secs_f64(1.0 / rate));
        ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let mut in_flight = JoinSet::new();
        let mut i = 0;
        loop {
            let scheduled = tokio::select! {
                t = ticks.tick() => t,
                // Reap finished requests so the set stays small.
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => continue,
            };
            if !bound.allows(i, scheduled) {
                break;
            }
            let this = self.clone();
            in_flight.spawn(async move { this.submit(i, scheduled).await });
            i += 1;
        }
        while in_flight.join_next().await.is_some() {}
    }

    /// Submission number `i`, counted from `start`.
    async fn submit(&self, i: u64, start: Instant) {
        let user = &self.users[(i % self.users.len() as u64) as usize];
        let body = self.pool.body(i);
        let bytes = body.len();
        let mut req = self
            .client
            .post(self.url.clone())
            .timeout(self.timeout)
            .header(reqwest::header::AUTHORIZATION, user.auth())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static(self.pool.format().content_type()),
            );
        if self.pool.gzip() {
            req = req.header(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        let outcome = match req.body(body).send().await {
            Ok(r) if r.status() == StatusCode::ACCEPTED => {
                let answered = Instant::now();
                match r.json::<Accepted>().await {
                    Ok(a) => Ok((a.game_id, answered)),
                    Err(_) => Err("unreadable 202 answer".to_owned()),
                }
            }
            Ok(r) => {
                let status = r.status();
                // Read the body so the connection can be reused.
                let _ = r.bytes().await;
                Err(format!("HTTP {}", status.as_u16()))
            }
            Err(e) => Err(transport_kind(&e).to_owned()),
        };
        match outcome {
            Ok((game_id, answered)) => self.tracker.accepted(game_id, start, answered, bytes),
            Err(kind) => self.tracker.errored(kind, bytes),
        }
        self.progress.inc(1);
    }
}

fn transport_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    }
}
