//! What the tests of m2m share, so that each test says only what it checks:
//!
//! - [`spawn_app`] / [`spawn_app_with`]: the whole system in the test
//!   process (m2m-app's `Application` over SQLite in a temporary directory
//!   and an in-process bus), on a free port, as a [`TestApp`];
//! - [`Proc`] and [`m2m_command`]: the real `m2m` binary as a child
//!   process, its first lines awaited, stopped by SIGTERM or SIGKILL, its
//!   logs collected;
//! - [`Api`]: one typed client of the HTTP API, for both, with the raw
//!   requests hostile tests need;
//! - [`small_game`] / [`ten_second_game`]: generated uploads, and
//!   [`json_to_cbor`] for the same uploads in CBOR.

mod app;
mod client;
mod games;
mod process;
mod sse;

pub use app::{spawn_app, spawn_app_on, spawn_app_with, Options, TestApp};
pub use client::{
    assert_problem, occurrences, token_claims, Accepted, Api, PASSWORD, POLL, PROCESS_TIMEOUT,
};
pub use games::{json_to_cbor, small_game, small_game_at, ten_second_game, CborColumns};
pub use process::{logs, m2m_command, Proc, START_TIMEOUT};
pub use sse::{Sse, SseReader};
