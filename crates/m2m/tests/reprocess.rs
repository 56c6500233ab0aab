//! `m2m reprocess` as an operator runs it: the real binary on a real data
//! directory, with `m2m serve` stopped and running.
//!
//! The games are first analysed by `m2m serve` of this build (algorithm
//! version 1); the binary then plays a later release through
//! `M2M_TEST_ALGORITHM_VERSION=2` (read by debug builds only), over the
//! same metric definitions: what is tested is what a release that bumps
//! the version does to the data of the one before.

use m2m_testkit::{m2m_command, Api, Proc, SseReader, START_TIMEOUT};
use serde_json::Value;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

/// How long a run of the command may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// `m2m serve` on a free port, as `version` (None: this build's own).
async fn serve(data_dir: &Path, version: Option<u32>) -> (Proc, Api) {
    let mut cmd = m2m_command(env!("CARGO_BIN_EXE_m2m"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir);
    if let Some(v) = version {
        cmd.env("M2M_TEST_ALGORITHM_VERSION", v.to_string());
    }
    let mut server = Proc::spawn("m2m serve", &mut cmd);
    let line = server
        .wait_line("m2m serving on http://", START_TIMEOUT)
        .await;
    let addr = line["m2m serving on ".len()..]
        .split_once(' ')
        .map(|(a, _)| a.to_owned())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    (server, Api::new(&addr))
}

/// Stops a server with SIGTERM and waits for it.
async fn stop(mut server: Proc) {
    server.terminate();
    let status = server.wait_exit(Duration::from_secs(20)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "m2m serve did not stop cleanly: {status:?}; stderr:\n{}",
        server.finished_stderr()
    );
}

/// `m2m reprocess ARGS --data-dir DIR` as version 2, started.
fn reprocess(data_dir: &Path, args: &[&str]) -> Proc {
    let mut cmd = m2m_command(env!("CARGO_BIN_EXE_m2m"));
    cmd.arg("reprocess")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("M2M_TEST_ALGORITHM_VERSION", "2");
    Proc::spawn("m2m reprocess", &mut cmd)
}

/// Runs `m2m reprocess` to its end: its exit status, stdout lines and
/// stderr.
async fn run(data_dir: &Path, args: &[&str]) -> (ExitStatus, Vec<String>, String) {
    let mut proc = reprocess(data_dir, args);
    let status = proc.wait_exit(RUN_TIMEOUT).await;
    let stderr = proc.finished_stderr();
    let status =
        status.unwrap_or_else(|| panic!("m2m reprocess {args:?} did not end; stderr:\n{stderr}"));
    (status, proc.stdout.clone(), stderr)
}

/// Runs `m2m reprocess`, expecting success and these lines on stdout.
async fn run_ok(data_dir: &Path, args: &[&str], lines: &[&str]) {
    let (status, stdout, stderr) = run(data_dir, args).await;
    assert!(
        status.success(),
        "m2m reprocess {args:?}: {status}; stdout {stdout:?}; stderr:\n{stderr}"
    );
    assert_eq!(stdout, lines, "stderr:\n{stderr}");
}

/// What a run that follows `n` games to the end prints.
fn followed(n: u64) -> [String; 2] {
    [
        format!("reprocessing {n} games under algorithm version 2"),
        format!("{n} games reprocessed under algorithm version 2"),
    ]
}

/// A patient with `games` games analysed by this build's `m2m serve` (left
/// running): the server, the API, the patient's token and game ids.
async fn patient_with_games(
    api: &Api,
    server: &Proc,
    name: &str,
    games: std::ops::Range<u64>,
) -> (String, Vec<String>) {
    api.register(name).await;
    let token = api.access_token(name).await;
    let mut ids = Vec::new();
    for seed in games {
        ids.push(api.submit(&token, seed).await.to_string());
    }
    api.wait_processed(&token, &ids, &[server]).await;
    (token, ids)
}

/// The Changes of one game in the feed, in order.
fn changes_of<'a>(feed: &'a [Value], game_id: &str) -> Vec<&'a Value> {
    feed.iter().filter(|c| c["game_id"] == game_id).collect()
}

/// Each game of `ids` has its first result (version 1) and then exactly
/// `reprocessed` results of version 2, and reads as version 2.
async fn assert_history(api: &Api, token: &str, ids: &[String], reprocessed: usize) {
    let feed = api.feed(token).await;
    for id in ids {
        let changes = changes_of(&feed, id);
        assert_eq!(changes.len(), 1 + reprocessed, "game {id}: {feed:#?}");
        assert_eq!(changes[0]["type"], "game.processed", "{feed:#?}");
        assert_eq!(changes[0]["algorithm_version"], 1, "{feed:#?}");
        for change in &changes[1..] {
            assert_eq!(change["type"], "game.reprocessed", "{feed:#?}");
            assert_eq!(change["algorithm_version"], 2, "{feed:#?}");
            assert_eq!(change["status"], "processed", "{feed:#?}");
        }
        let game = api.game(token, id).await;
        let want = if reprocessed > 0 { 2 } else { 1 };
        assert_eq!(game["algorithm_version"], want, "{game}");
        assert_eq!(game["status"], "processed", "{game}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reprocessing_a_data_directory_without_a_server_keeps_history_and_is_not_redone() {
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = serve(dir.path(), None).await;
    let (ada, ada_games) = patient_with_games(&api, &server, "ada-r", 0..2).await;
    let (_, bob_games) = patient_with_games(&api, &server, "bob-r", 10..11).await;
    let ada_id = api.read(&ada, "/v1/me").await["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_history(&api, &ada, &ada_games, 0).await;
    stop(server).await;

    // One patient's games first: the command does the work itself.
    run_ok(
        dir.path(),
        &["--all", "--user", &ada_id],
        &followed(2).each_ref().map(String::as_str),
    )
    .await;
    // Then everyone's: only the game still to do is analysed.
    run_ok(
        dir.path(),
        &["--all"],
        &followed(1).each_ref().map(String::as_str),
    )
    .await;
    // And again: nothing.
    run_ok(
        dir.path(),
        &["--all"],
        &followed(0).each_ref().map(String::as_str),
    )
    .await;

    // Served by a server of the later release: every read shows version 2,
    // the feed keeps both results of each game, and once only.
    let (server, api) = serve(dir.path(), Some(2)).await;
    let ada = api.access_token("ada-r").await;
    let bob = api.access_token("bob-r").await;
    assert_history(&api, &ada, &ada_games, 1).await;
    assert_history(&api, &bob, &bob_games, 1).await;
    let progress = api.read(&ada, "/v1/progress").await;
    assert_eq!(progress["algorithm_version"], 2, "{progress}");

    // The event stream replays the reprocessing after the first results.
    let feed = api.feed(&ada).await;
    let first = feed[0]["cursor"].as_str().unwrap().to_owned();
    let mut events = api.events(&ada, Some(&first)).await;
    let mut names = Vec::new();
    for _ in 1..feed.len() {
        let e = events
            .next_event(Duration::from_secs(10))
            .await
            .expect("a replayed event");
        names.push(e.event.unwrap_or_default());
    }
    assert_eq!(
        names,
        ["game.processed", "game.reprocessed", "game.reprocessed"]
    );
    drop(events);
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reprocessing_with_a_server_running_announces_it_live() {
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = serve(dir.path(), None).await;
    let (_, games) = patient_with_games(&api, &server, "cleo-r", 0..2).await;
    stop(server).await;

    let (server, api) = serve(dir.path(), Some(2)).await;
    let token = api.access_token("cleo-r").await;
    let mut events: SseReader = api.events(&token, None).await;
    // The server holds the data directory: the command stores the events
    // and follows while the server's publisher and processor do the work.
    let (status, stdout, stderr) = run(dir.path(), &["--all"]).await;
    assert!(status.success(), "{status}: {stdout:?}\n{stderr}");
    assert_eq!(stdout, followed(2), "{stderr}");
    for _ in 0..2 {
        let e = events
            .next_event(Duration::from_secs(30))
            .await
            .expect("a live event");
        assert_eq!(e.event.as_deref(), Some("game.reprocessed"), "{e:?}");
        let change: Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(change["algorithm_version"], 2);
        assert!(games.iter().any(|g| change["game_id"] == g.as_str()));
    }
    assert_history(&api, &token, &games, 1).await;
    run_ok(
        dir.path(),
        &["--all"],
        &followed(0).each_ref().map(String::as_str),
    )
    .await;
    drop(events);
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stored_without_waiting_the_next_server_does_the_work() {
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = serve(dir.path(), None).await;
    let (_, games) = patient_with_games(&api, &server, "dora-r", 0..2).await;
    stop(server).await;

    run_ok(
        dir.path(),
        &["--all", "--no-wait"],
        &["2 games to reprocess under algorithm version 2: 2 events stored for the next m2m serve"],
    )
    .await;
    // Asked twice: stored once.
    run_ok(
        dir.path(),
        &["--all", "--no-wait"],
        &["2 games to reprocess under algorithm version 2: 0 events stored for the next m2m serve"],
    )
    .await;
    let (server, api) = serve(dir.path(), Some(2)).await;
    let token = api.access_token("dora-r").await;
    for id in &games {
        for _ in 0..300 {
            if api.game(&token, id).await["algorithm_version"] == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_history(&api, &token, &games, 1).await;
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn interrupted_and_run_again_it_finishes_without_redoing() {
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = serve(dir.path(), None).await;
    let (_, games) = patient_with_games(&api, &server, "emil-r", 0..6).await;
    stop(server).await;

    // Ctrl-C once it follows the work: whatever it finished stays finished.
    let mut first = reprocess(dir.path(), &["--all", "--concurrency", "1"]);
    first
        .wait_line(
            "reprocessing 6 games under algorithm version 2",
            RUN_TIMEOUT,
        )
        .await;
    nix_interrupt(first.pid());
    let status = first
        .wait_exit(RUN_TIMEOUT)
        .await
        .expect("m2m reprocess ends after SIGINT");
    let stderr = first.finished_stderr();
    let last = first.stdout.last().cloned().unwrap_or_default();
    match status.code() {
        Some(130) => assert!(last.starts_with("interrupted: "), "{last:?}\n{stderr}"),
        // It was done before the signal came.
        Some(0) => assert_eq!(last, "6 games reprocessed under algorithm version 2"),
        other => panic!("exit {other:?}: {:?}\n{stderr}", first.stdout),
    }

    let (status, stdout, stderr) = run(dir.path(), &["--all"]).await;
    assert!(status.success(), "{status}: {stdout:?}\n{stderr}");
    assert!(
        stdout.len() == 2 && stdout[1].ends_with(" games reprocessed under algorithm version 2"),
        "{stdout:?}"
    );
    let (server, api) = serve(dir.path(), Some(2)).await;
    let token = api.access_token("emil-r").await;
    assert_history(&api, &token, &games, 1).await;
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_this_release_does_not_have_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, stderr) = run(dir.path(), &["--before-version", "3"]).await;
    assert_eq!(status.code(), Some(2), "{stdout:?}\n{stderr}");
    assert!(
        stderr.contains("--before-version 3 is above this release's algorithm version 2"),
        "{stderr}"
    );
    // Neither --all nor --before-version: clap's usage error.
    let (status, _, stderr) = run(dir.path(), &[]).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--all"), "{stderr}");
}

/// Sends SIGINT (what Ctrl-C sends) to a process.
fn nix_interrupt(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
}
