//! `GET /v1/me/export`: the caller's own copy of their data, a zip
//! streamed as it is written (docs/data-lifecycle.md, "A patient's copy
//! and erasure").
//!
//! The zip holds `account.json`, `games.json` (every game as
//! `GET /v1/games/{game_id}` shows it, metrics included) and
//! `samples/<game id>.csv` per game. It is written on the blocking pool
//! into a bounded channel that feeds the response body, so memory holds a
//! page of games, one game's samples and a few chunks of output, however
//! many games there are; a slow client slows the writer down.
//!
//! The games are read twice, a page at a time: once for `games.json`,
//! once for the samples (a zip's files follow each other, and holding
//! every game's metadata until the end would grow with their number). A
//! game uploaded while the export runs is in neither.
//!
//! The answer's status and headers go out before the zip is written: a
//! failure past that point (the store going away) can only cut the body
//! short, which every unzip tool reports as a damaged archive; it is
//! logged. Shutting the server down cuts a running export the same way.

use crate::error::ApiResult;
use crate::extract::AuthUser;
use crate::routes::me::{profile, time_zone};
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use m2m_domain::{GameSamples, Role};
use m2m_store::{Store, StoreError};
use serde::Serialize;
use std::io::{self, Write};
use std::sync::Arc;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// Bytes of zip handed to the response at a time.
const CHUNK: usize = 64 * 1024;

/// Chunks waiting for the client at most (so at most ~256 KiB of output
/// per export is held).
const CHUNKS_IN_FLIGHT: usize = 4;

/// Games read from the store at a time.
const PAGE: u32 = 100;

/// `account.json`: who the account is, its settings, and (a patient's)
/// therapists.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AccountFile {
    user_id: Uuid,
    username: String,
    role: Role,
    /// The IANA time zone of the account's days; `UTC` unless set.
    tz: String,
    /// A patient's therapists, oldest link first; empty for a therapist
    /// (whose patients' data is theirs, not in this copy).
    therapists: Vec<LinkedTherapist>,
    /// When this copy was made.
    exported_at: DateTime<Utc>,
}

/// A therapist the patient is linked to.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct LinkedTherapist {
    therapist_id: Uuid,
    username: String,
    linked_at: DateTime<Utc>,
}

/// A zip archive, as the document states it (bytes, not an array of
/// numbers); only documents the answer.
#[derive(Debug, utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub(crate) struct ZipArchive(Vec<u8>);

/// A copy of the caller's data: a zip of `account.json` (the account,
/// its settings and its therapists), `games.json` (every game with its
/// metrics, as `GET /v1/games/{game_id}` shows it) and
/// `samples/<game_id>.csv` for each game (a header `t,<channel>,…`; `t` in
/// seconds from the game's start; each value as stored, in the shortest
/// text that reads back to the same number).
#[utoipa::path(get, path = "/v1/me/export", tag = "accounts", security(("bearer" = [])),
    responses(
        (status = 200, description = "the zip, streamed as it is written (no Content-Length); a body cut short means the export failed part-way and should be asked for again",
            content_type = "application/zip", body = ZipArchive,
            headers(("Content-Disposition" = String, description = "`attachment; filename=\"m2m-export-<username>.zip\"`"))),
    ))]
pub(crate) async fn export_me(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<Response> {
    // Everything that can be refused is read before the answer starts.
    let profile = profile(&state, user).await?;
    let therapists = match profile.role {
        Role::Patient => state.store().therapists_of(user.user_id).await?,
        Role::Therapist => Vec::new(),
    };
    let account = AccountFile {
        user_id: profile.user_id,
        username: profile.username.clone(),
        role: profile.role,
        tz: time_zone(&profile).name().to_owned(),
        therapists: therapists
            .into_iter()
            .map(|t| LinkedTherapist {
                therapist_id: t.therapist_id,
                username: t.username,
                linked_at: t.linked_at,
            })
            .collect(),
        exported_at: Utc::now(),
    };
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(CHUNKS_IN_FLIGHT);
    let export = Export {
        store: state.store().clone(),
        runtime: Handle::current(),
        user_id: user.user_id,
        shutdown: state.0.shutdown.clone(),
    };
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        span.in_scope(|| {
            let out = ChannelWriter::new(tx.clone(), export.shutdown.clone());
            match export.write(account, out) {
                Ok(games) => tracing::info!(games, "account exported"),
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                    tracing::info!(reason = %e, "account export ended early");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "account export failed part-way");
                    // Cuts the body short rather than ending it cleanly.
                    let _ = tx.blocking_send(Err(e));
                }
            }
        })
    });
    let chunks = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let body = Body::from_stream(chunks);
    // Usernames are `[A-Za-z0-9._-]`: nothing to escape in the name.
    let disposition = format!(
        "attachment; filename=\"m2m-export-{}.zip\"",
        profile.username
    );
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition).unwrap_or_else(|_| {
            HeaderValue::from_static("attachment; filename=\"m2m-export.zip\"")
        }),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// One export, run on the blocking pool.
struct Export {
    store: Arc<dyn Store>,
    /// To wait for the store from the blocking thread.
    runtime: Handle,
    user_id: Uuid,
    shutdown: CancellationToken,
}

impl Export {
    /// Writes the whole zip to `out`; returns how many games it holds.
    fn write(&self, account: AccountFile, out: ChannelWriter) -> io::Result<usize> {
        let mut zip = ZipWriter::new_stream(out);
        let options = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);

        zip.start_file("account.json", options)
            .map_err(io::Error::other)?;
        serde_json::to_writer_pretty(&mut zip, &account)?;
        zip.write_all(b"\n")?;

        // games.json, a page of games at a time, each with its metrics.
        zip.start_file("games.json", options)
            .map_err(io::Error::other)?;
        zip.write_all(b"[")?;
        let mut newest: Option<Uuid> = None;
        let mut count = 0;
        self.each_game(|game_id| {
            newest.get_or_insert(game_id);
            let Some(game) = self.wait(self.store.game(self.user_id, game_id))? else {
                return Ok(()); // deleted meanwhile
            };
            let separator: &[u8] = if count == 0 { b"\n  " } else { b",\n  " };
            zip.write_all(separator)?;
            serde_json::to_writer(&mut zip, &game)?;
            count += 1;
            Ok(())
        })?;
        let end: &[u8] = if count == 0 { b"]\n" } else { b"\n]\n" };
        zip.write_all(end)?;

        // The samples of the same games (not of those uploaded since).
        if let Some(newest) = newest {
            self.each_game(|game_id| {
                if game_id > newest {
                    return Ok(());
                }
                match self.store_result(self.store.game_samples(self.user_id, game_id)) {
                    Ok(Some(samples)) => {
                        zip.start_file(format!("samples/{game_id}.csv"), options)
                            .map_err(io::Error::other)?;
                        write_csv(&mut zip, &samples)
                    }
                    Ok(None) => Ok(()),
                    // One damaged game does not withhold the others: its
                    // file says why it is missing.
                    Err(e @ StoreError::Corrupt { .. }) => {
                        tracing::warn!(%game_id, error = %e, "a game's samples cannot be read; exported without them");
                        zip.start_file(format!("samples/{game_id}.unreadable.txt"), options)
                            .map_err(io::Error::other)?;
                        writeln!(zip, "The samples of this game cannot be read: {e}")
                    }
                    Err(e) => Err(io::Error::other(e)),
                }
            })?;
        }
        let mut out = zip.finish().map_err(io::Error::other)?;
        out.flush()?;
        Ok(count)
    }

    /// Calls `f` with the id of each of the user's games, newest first, a
    /// page at a time.
    fn each_game(&self, mut f: impl FnMut(Uuid) -> io::Result<()>) -> io::Result<()> {
        let mut before = None;
        loop {
            let page = self.wait(self.store.list_games(self.user_id, before, PAGE))?;
            for game in &page {
                f(game.game_id)?;
            }
            match page.last() {
                Some(last) if page.len() == PAGE as usize => before = Some(last.game_id),
                _ => return Ok(()),
            }
        }
    }

    /// Waits for a store call from the blocking thread.
    fn store_result<T>(
        &self,
        call: impl std::future::Future<Output = m2m_store::Result<T>>,
    ) -> m2m_store::Result<T> {
        self.runtime.block_on(call)
    }

    /// As [`Export::store_result`], any error ending the export.
    fn wait<T>(
        &self,
        call: impl std::future::Future<Output = m2m_store::Result<T>>,
    ) -> io::Result<T> {
        if self.shutdown.is_cancelled() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the server is shutting down",
            ));
        }
        self.store_result(call).map_err(io::Error::other)
    }
}

/// A game's samples as CSV: `t` (seconds from the start: sample index ÷
/// sample rate) and one column per channel, in name order; every number
/// in its shortest text that reads back to the same `f64` (ryu, as the
/// JSON answers write numbers).
fn write_csv(out: &mut impl Write, samples: &GameSamples) -> io::Result<()> {
    let columns: Vec<&[f64]> = samples.channels.iter().map(|(_, c)| c).collect();
    let mut text = String::with_capacity(CHUNK + 1024);
    text.push('t');
    for name in samples.channels.names() {
        text.push(',');
        text.push_str(name);
    }
    text.push('\n');
    let mut number = ryu::Buffer::new();
    for i in 0..samples.channels.samples() {
        text.push_str(number.format(i as f64 / samples.sample_rate_hz));
        for column in &columns {
            text.push(',');
            text.push_str(number.format(column[i]));
        }
        text.push('\n');
        if text.len() >= CHUNK {
            out.write_all(text.as_bytes())?;
            text.clear();
        }
    }
    out.write_all(text.as_bytes())
}

/// Hands what the zip writer writes to the response body in chunks of
/// [`CHUNK`] bytes, waiting while [`CHUNKS_IN_FLIGHT`] are not yet taken.
/// Fails with `BrokenPipe` once the client has gone or the server shuts
/// down, which ends the export.
struct ChannelWriter {
    buffer: Vec<u8>,
    tx: mpsc::Sender<io::Result<Bytes>>,
    shutdown: CancellationToken,
}

impl ChannelWriter {
    fn new(tx: mpsc::Sender<io::Result<Bytes>>, shutdown: CancellationToken) -> Self {
        ChannelWriter {
            buffer: Vec::with_capacity(CHUNK),
            tx,
            shutdown,
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        if self.shutdown.is_cancelled() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the server is shutting down",
            ));
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn csv_has_a_time_column_and_shortest_round_trip_values() {
        let mut columns = BTreeMap::new();
        columns.insert("flex_index".to_owned(), vec![0.1, -2.5, 1e-7]);
        columns.insert(
            "force".to_owned(),
            vec![3.0, 0.30000000000000004, 12345.678],
        );
        let samples = GameSamples {
            sample_rate_hz: 100.0,
            score: 0.0,
            channels: m2m_domain::Channels::from_stored(columns).unwrap(),
        };
        let mut out = Vec::new();
        write_csv(&mut out, &samples).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "t,flex_index,force\n\
             0.0,0.1,3.0\n\
             0.01,-2.5,0.30000000000000004\n\
             0.02,1e-7,12345.678\n"
        );
    }
}
