//! Reading `text/event-stream` from a response, as a phone does.

use futures::StreamExt;
use std::time::Duration;
use tokio::time::Instant;

/// One block of an event stream: an event, or a comment (keep-alive).
#[derive(Debug, Default)]
pub struct Sse {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: String,
    pub comment: bool,
}

/// Reads blocks off a `text/event-stream` response.
pub struct SseReader {
    stream: futures::stream::BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buf: String,
}

impl std::fmt::Debug for SseReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseReader")
            .field("buf", &self.buf)
            .finish_non_exhaustive()
    }
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        SseReader {
            stream: response
                .bytes_stream()
                .map(|chunk| chunk.map(|b| b.to_vec()))
                .boxed(),
            buf: String::new(),
        }
    }

    /// The next event or comment within `timeout`; `None` when the time
    /// passes first, or the stream ends or fails.
    pub async fn next(&mut self, timeout: Duration) -> Option<Sse> {
        tokio::time::timeout(timeout, async {
            loop {
                if let Some(end) = self.buf.find("\n\n") {
                    let block: String = self.buf.drain(..end + 2).collect();
                    return Some(parse_block(&block));
                }
                let chunk = self.stream.next().await?.ok()?;
                self.buf.push_str(&String::from_utf8_lossy(&chunk));
                // Normalise the line ends SSE allows.
                if self.buf.contains('\r') {
                    self.buf = self.buf.replace("\r\n", "\n").replace('\r', "\n");
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// The next real event within `timeout` (keep-alive comments skipped).
    pub async fn next_event(&mut self, timeout: Duration) -> Option<Sse> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let e = self.next(left).await?;
            if !e.comment {
                return Some(e);
            }
        }
    }
}

fn parse_block(block: &str) -> Sse {
    let mut e = Sse::default();
    let mut has_data = false;
    for line in block.lines() {
        if line.starts_with(':') {
            e.comment = true;
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => e.event = Some(value.to_owned()),
            "id" => e.id = Some(value.to_owned()),
            "data" => {
                if has_data {
                    e.data.push('\n');
                }
                e.data.push_str(value);
                has_data = true;
            }
            _ => {}
        }
    }
    e
}
