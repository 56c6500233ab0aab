//! `m2m serve` as an operator runs it: the real binary on a real port and a
//! real data directory, stopped by signals (SIGKILL, SIGTERM) and started
//! again. These are the tests of the promise that an accepted game (a 202)
//! is never lost.

use m2m_testkit::{m2m_command, occurrences, Api, Proc, START_TIMEOUT};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `m2m serve --listen LISTEN --data-dir DIR EXTRA…`, not waited for. The
/// token secret must come from the data directory, so that a restart
/// keeps it: the harness passes no `M2M_*` variable.
fn spawn(listen: &str, data_dir: &Path, extra: &[&str]) -> Proc {
    spawn_with(listen, data_dir, extra, None)
}

/// As [`spawn`]; with `stderr_lines`, stderr is read for that many lines
/// and then closed, as `m2m serve 2>&1 | head -5` does once `head` exits.
fn spawn_with(listen: &str, data_dir: &Path, extra: &[&str], stderr_lines: Option<usize>) -> Proc {
    let mut cmd = m2m_command(env!("CARGO_BIN_EXE_m2m"));
    cmd.arg("serve")
        .args(["--listen", listen, "--data-dir"])
        .arg(data_dir)
        .args(extra);
    Proc::spawn_with("m2m serve", &mut cmd, stderr_lines)
}

/// Starts `m2m serve` on a free port of 127.0.0.1 and waits until it
/// prints its address. Returns the server and its base URL.
async fn start(data_dir: &Path, extra: &[&str]) -> (Proc, String) {
    start_with("127.0.0.1:0", data_dir, extra, None).await
}

/// Starts `m2m serve --listen LISTEN` and waits for its first stdout line,
/// `m2m serving on http://ADDR (data in DIR)`.
async fn start_with(
    listen: &str,
    data_dir: &Path,
    extra: &[&str],
    stderr_lines: Option<usize>,
) -> (Proc, String) {
    let mut server = spawn_with(listen, data_dir, extra, stderr_lines);
    let line = server
        .wait_line("m2m serving on http://", START_TIMEOUT)
        .await;
    assert_eq!(
        server.stdout.len(),
        1,
        "unexpected first line {:?}; stderr:\n{}",
        server.stdout[0],
        server.stderr()
    );
    let rest = &line["m2m serving on http://".len()..];
    let (addr, dir) = rest
        .split_once(" (data in ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    assert_eq!(
        dir.strip_suffix(')'),
        Some(data_dir.display().to_string().as_str()),
        "{line}"
    );
    let addr: std::net::SocketAddr = addr
        .parse()
        .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
    assert_ne!(addr.port(), 0, "{line}");
    (server, format!("http://{addr}"))
}

/// The log line of a start that found games still queued, if any.
fn republished_line(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .find(|l| l.contains("republishing the events of games still queued"))
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_server_loses_no_accepted_game() {
    const GAMES: u64 = 40;
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();

    // One analysis at a time, so that the kill is likely to find games
    // still queued.
    let (mut server, base) = start(dir.path(), &["--concurrency", "1"]).await;
    let api = Arc::new(Api::new(&base));
    api.register("kill-patient").await;
    let old_token = api.access_token("kill-patient").await;
    let accepted = api.submit_many(&old_token, 0..GAMES).await;
    assert_eq!(accepted.len(), GAMES as usize);
    assert_eq!(
        accepted.iter().collect::<HashSet<_>>().len(),
        accepted.len(),
        "game_ids are distinct"
    );

    // Best effort: how many were done just before the kill.
    let done_before_kill = match api.sync_page(&old_token, None).await {
        (200, page) => page["changes"].as_array().map_or(0, Vec::len),
        _ => 0,
    };
    server.kill();
    let unprocessed = accepted.len().saturating_sub(done_before_kill);
    if unprocessed == 0 {
        println!("all {GAMES} games were processed before the SIGKILL: recovery was not exercised");
    } else {
        println!("at most {unprocessed} of {GAMES} accepted games were unprocessed at the SIGKILL");
    }
    let first_stderr = server.finished_stderr();
    drop(server);

    let (server, base) = start(dir.path(), &[]).await;
    let api = Api::new(&base);
    let token = api.access_token("kill-patient").await;
    // The secret is kept in the data directory: the old token still works.
    let (status, page) = api.sync_page(&old_token, None).await;
    assert_eq!(status, 200, "the token from before the kill: {page}");

    api.wait_processed(&token, &accepted, &[&server]).await;
    // The whole feed, read again from the start.
    let (feed, _) = api.sync_from(&token, None).await;
    let counts = occurrences(&feed);
    for id in &accepted {
        assert_eq!(counts.get(id), Some(&1), "game {id} in the feed: {feed:#?}");
    }
    assert_eq!(
        feed.len(),
        accepted.len(),
        "the feed has only the accepted games, once each: {feed:#?}"
    );
    api.assert_processed_games(&token, &accepted).await;

    let republished = republished_line(&server.stderr());
    println!(
        "after the restart: {}",
        republished.as_deref().unwrap_or("nothing republished")
    );
    if unprocessed > 0 {
        assert!(
            republished.is_some(),
            "games were queued at the kill but the restart republished nothing;\n\
             first run stderr:\n{first_stderr}\nsecond run stderr:\n{}",
            server.stderr()
        );
    }
    println!(
        "a_killed_server_loses_no_accepted_game took {:?}",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();

    let (mut server, base) = start(dir.path(), &["--concurrency", "1"]).await;
    let api = Arc::new(Api::new(&base));
    api.register("term-patient").await;
    let token = api.access_token("term-patient").await;
    let accepted = api.submit_many(&token, 0..3).await;

    server.terminate();
    let status = server.wait_exit(Duration::from_secs(10)).await;
    let stderr = server.finished_stderr();
    let status = status
        .unwrap_or_else(|| panic!("m2m serve still running 10 s after SIGTERM; stderr:\n{stderr}"));
    assert!(
        status.success(),
        "exit after SIGTERM: {status}; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("m2m serve stopped"),
        "no shutdown line in stderr:\n{stderr}"
    );
    drop(server);

    let (server, base) = start(dir.path(), &[]).await;
    let api = Api::new(&base);
    let token = api.access_token("term-patient").await;
    let feed = api.wait_processed(&token, &accepted, &[&server]).await;
    let counts = occurrences(&feed);
    for id in &accepted {
        assert_eq!(counts.get(id), Some(&1), "game {id} in the feed: {feed:#?}");
    }
    api.assert_processed_games(&token, &accepted).await;
    println!(
        "after the restart: {}",
        republished_line(&server.stderr()).unwrap_or_else(|| "nothing republished".into())
    );
    println!("sigterm_stops_the_server_cleanly took {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_refuses_a_port_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();

    let mut server = spawn(&addr, dir.path(), &[]);
    let status = server.wait_exit(Duration::from_secs(10)).await;
    let stderr = server.finished_stderr();
    let status = status.unwrap_or_else(|| {
        panic!("m2m serve still running on a taken port {addr}; stderr:\n{stderr}")
    });
    assert!(!status.success(), "exit on a taken port: {status}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "stderr does not name {addr}:\n{stderr}"
    );
    drop(taken);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_carry_the_documented_names() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, base) = start(dir.path(), &[]).await;
    let api = Arc::new(Api::new(&base));
    api.register("metrics-patient").await;
    let token = api.access_token("metrics-patient").await;
    api.submit_many(&token, 0..1).await;
    let text = api.metrics().await;
    for name in [
        "m2m_games_accepted_total 1",
        "m2m_http_requests_total{",
        "m2m_games_processed_total",
        "m2m_bus_backlog",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{name} missing:\n{text}"
        );
    }
}

/// Waits for a server that must refuse to start; returns its stderr.
async fn refused(mut server: Proc, what: &str) -> String {
    let status = server.wait_exit(Duration::from_secs(20)).await;
    let stderr = server.finished_stderr();
    let status = status
        .unwrap_or_else(|| panic!("m2m serve still running 20 s after {what}; stderr:\n{stderr}"));
    assert!(
        !status.success(),
        "exit after {what}: {status}; stderr:\n{stderr}"
    );
    stderr
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_log_pipe_stops_neither_the_service_nor_its_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    // Its stderr is read for two lines and then closed, as by
    // `m2m serve 2>&1 | head -2`; the start alone logs more than that.
    let (mut server, base) =
        start_with("127.0.0.1:0", dir.path(), &["--concurrency", "2"], Some(2)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.stderr_closed() {
        assert!(
            Instant::now() < deadline,
            "the log pipe was not closed: fewer than 2 lines in 10 s:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Every request and every game is logged, into the closed pipe.
    let api = Arc::new(Api::new(&base));
    api.register("pipe-patient").await;
    let token = api.access_token("pipe-patient").await;
    let accepted = api.submit_many(&token, 0..3).await;
    let feed = api.wait_processed(&token, &accepted, &[&server]).await;
    let counts = occurrences(&feed);
    for id in &accepted {
        assert_eq!(counts.get(id), Some(&1), "game {id} in the feed: {feed:#?}");
    }
    api.assert_processed_games(&token, &accepted).await;

    server.terminate();
    let status = server.wait_exit(Duration::from_secs(30)).await;
    let status = status.unwrap_or_else(|| {
        panic!(
            "m2m serve still running 30 s after SIGTERM; the stderr it got out:\n{}",
            server.stderr()
        )
    });
    assert!(status.success(), "exit after SIGTERM: {status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_server_on_the_same_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, base) = start(dir.path(), &[]).await;

    let second = spawn("127.0.0.1:0", dir.path(), &[]);
    let stderr = refused(second, "starting on a data directory in use").await;
    let dir_name = dir.path().display().to_string();
    for expected in [
        format!("the data directory {dir_name} is in use by another m2m serve"),
        format!("(pid {})", first.pid()),
    ] {
        assert!(stderr.contains(&expected), "no {expected:?} in:\n{stderr}");
    }
    assert!(
        !stderr.contains("migrated SQLite schema"),
        "the refused server opened the database:\n{stderr}"
    );

    // The first is unaffected and still serves.
    let api = Api::new(&base);
    api.register("lock-patient").await;
    let token = api.access_token("lock-patient").await;
    let (status, _) = api.sync_page(&token, None).await;
    assert_eq!(status, 200);

    // The lock goes with its process, even a killed one.
    first.kill();
    let (_third, base) = start(dir.path(), &[]).await;
    let api = Api::new(&base);
    api.login("lock-patient").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_listen_address_may_be_a_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, base) = start_with("localhost:0", dir.path(), &[], None).await;
    let addr: std::net::SocketAddr = base["http://".len()..].parse().unwrap();
    assert!(addr.ip().is_loopback(), "localhost served on {addr}");
    let r = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(r.status(), 200);

    let other = tempfile::tempdir().unwrap();
    let bad = "no-such-host.invalid:8080";
    let stderr = refused(spawn(bad, other.path(), &[]), "an unknown host").await;
    assert!(
        stderr.contains(&format!("cannot listen on {bad}")),
        "stderr does not name {bad}:\n{stderr}"
    );
}
