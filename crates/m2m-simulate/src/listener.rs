//! Each user's `GET /v1/events` stream: records when each game's
//! `game.processed` / `game.failed` event arrives.

use crate::tracker::{Outcome, Tracker};
use crate::users::User;
use crate::SimulateError;
use futures::StreamExt;
use reqwest::{Client, StatusCode, Url};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

/// One event of a `text/event-stream`.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct SseEvent {
    pub(crate) event: Option<String>,
    pub(crate) id: Option<String>,
    pub(crate) data: String,
}

/// An incremental parser of the event-stream format: feed it chunks as
/// they arrive, get whole events out (comments are skipped).
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    line: Vec<u8>,
    current: SseEvent,
    has_field: bool,
}

impl SseParser {
    pub(crate) fn push(&mut self, chunk: &[u8], mut emit: impl FnMut(SseEvent)) {
        for &b in chunk {
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            if self.line.is_empty() {
                if self.has_field {
                    emit(std::mem::take(&mut self.current));
                    self.has_field = false;
                }
            } else {
                self.field();
            }
            self.line.clear();
        }
    }

    fn field(&mut self) {
        let line = String::from_utf8_lossy(&self.line);
        if line.starts_with(':') {
            return;
        }
        let (name, value) = line.split_once(':').unwrap_or((&line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match name {
            "event" => self.current.event = Some(value.to_owned()),
            "id" => self.current.id = Some(value.to_owned()),
            "data" => {
                if !self.current.data.is_empty() {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
            }
            _ => return,
        }
        self.has_field = true;
    }
}

/// The part of a Change the simulator needs.
#[derive(Deserialize)]
struct ChangeRef {
    game_id: Uuid,
}

/// Opens the user's stream and returns once the server has answered 200
/// (from then on, no change of the user is missed), with the task that
/// reads it. The task reconnects with `Last-Event-ID` if the stream drops,
/// and runs until aborted.
pub(crate) async fn listen(
    client: Client,
    base: &Url,
    user: Arc<User>,
    tracker: Arc<Tracker>,
) -> Result<JoinHandle<()>, SimulateError> {
    let url = base.join("v1/events").expect("a relative path joins");
    let first = open(&client, &url, &user, None)
        .await
        .map_err(|detail| SimulateError::Events {
            username: user.username.clone(),
            detail,
        })?;
    Ok(tokio::spawn(async move {
        let mut response = first;
        let mut last_id: Option<String> = None;
        loop {
            read(response, &tracker, &mut last_id).await;
            // Dropped: reconnect and resume after the last event seen.
            response = loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if let Ok(r) = open(&client, &url, &user, last_id.as_deref()).await {
                    break r;
                }
            };
        }
    }))
}

async fn open(
    client: &Client,
    url: &Url,
    user: &User,
    last_id: Option<&str>,
) -> Result<reqwest::Response, String> {
    let mut req = client
        .get(url.clone())
        .header(reqwest::header::AUTHORIZATION, user.auth())
        .header(reqwest::header::ACCEPT, "text/event-stream");
    if let Some(id) = last_id {
        req = req.header("last-event-id", id);
    }
    let r = req.send().await.map_err(|e| e.to_string())?;
    if r.status() != StatusCode::OK {
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        return Err(format!("HTTP {status}: {body}"));
    }
    Ok(r)
}

async fn read(response: reqwest::Response, tracker: &Tracker, last_id: &mut Option<String>) {
    let mut parser = SseParser::default();
    let mut body = response.bytes_stream();
    while let Some(Ok(chunk)) = body.next().await {
        let at = Instant::now();
        parser.push(&chunk, |e| {
            let outcome = match e.event.as_deref() {
                Some("game.processed") => Outcome::Processed,
                Some("game.failed") => Outcome::Failed,
                _ => return,
            };
            if e.id.is_some() {
                *last_id = e.id;
            }
            if let Ok(c) = serde_json::from_str::<ChangeRef>(&e.data) {
                tracker.notified(c.game_id, outcome, at);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_split_anywhere_and_skips_comments() {
        let text = ": keep-alive\n\nevent: game.processed\nid: 0001\ndata: {\"a\":\ndata: 1}\n\n\
                    event:game.failed\r\nid:0002\r\ndata:x\r\n\r\n";
        for split in [1, 3, 7, text.len()] {
            let mut p = SseParser::default();
            let mut got = Vec::new();
            for chunk in text.as_bytes().chunks(split) {
                p.push(chunk, |e| got.push(e));
            }
            assert_eq!(
                got,
                [
                    SseEvent {
                        event: Some("game.processed".into()),
                        id: Some("0001".into()),
                        data: "{\"a\":\n1}".into(),
                    },
                    SseEvent {
                        event: Some("game.failed".into()),
                        id: Some("0002".into()),
                        data: "x".into(),
                    },
                ],
                "chunks of {split}"
            );
        }
    }
}
