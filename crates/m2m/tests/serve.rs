//! `m2m serve` as an operator runs it: the real binary on a real port and a
//! real data directory, stopped by signals (SIGKILL, SIGTERM) and started
//! again. These are the tests of the promise that an accepted game (a 202)
//! is never lost.

use m2m_synth::GameSpec;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long accepted games may take to show up processed after a start.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);

const PASSWORD: &str = "correct horse battery";

/// A running `m2m serve`. Killed (SIGKILL) on drop, so a failing test leaves
/// no process behind.
struct Server {
    child: Child,
    /// Lines of stdout, read by a thread so that waiting can time out.
    stdout: mpsc::Receiver<String>,
    /// Everything written to stderr so far, collected by a thread so that
    /// the pipe never fills up and blocks the server's logging.
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
}

/// How to start a server, beyond its address and data directory.
#[derive(Debug, Default, Clone)]
struct Launch {
    extra: Vec<String>,
    /// Stop reading stderr and close its pipe after this many lines, as
    /// `m2m serve 2>&1 | head -5` does once `head` exits.
    stderr_lines: Option<usize>,
}

impl Server {
    /// Starts `m2m serve` without waiting for it to be ready.
    fn spawn(listen: &str, data_dir: &Path, extra: &[&str]) -> Server {
        let launch = Launch {
            extra: extra.iter().map(|s| s.to_string()).collect(),
            ..Launch::default()
        };
        Server::spawn_with(listen, data_dir, &launch)
    }

    fn spawn_with(listen: &str, data_dir: &Path, launch: &Launch) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_m2m"))
            .arg("serve")
            .args(["--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(&launch.extra)
            // The token secret must come from the data directory, so that
            // a restart keeps it.
            .env_remove("M2M_JWT_SECRET")
            .env_remove("M2M_LOG_FORMAT")
            .env_remove("M2M_LISTEN")
            .env_remove("M2M_DATA_DIR")
            .env("M2M_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("m2m serve starts");
        let (tx, stdout) = mpsc::channel();
        let out = child.stdout.take().expect("stdout is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("stderr is piped");
        let sink = stderr.clone();
        let stderr_lines = launch.stderr_lines;
        let stderr_reader = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut lines = 0;
            loop {
                match err.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
                        sink.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
                if stderr_lines.is_some_and(|max| lines >= max) {
                    // Dropping `err` closes the only reading end.
                    break;
                }
            }
        });
        Server {
            child,
            stdout,
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    /// Starts `m2m serve` on a free port of 127.0.0.1 and waits until it
    /// prints its address. Returns the server and its base URL.
    async fn start(data_dir: &Path, extra: &[&str]) -> (Server, String) {
        let launch = Launch {
            extra: extra.iter().map(|s| s.to_string()).collect(),
            ..Launch::default()
        };
        Server::start_with("127.0.0.1:0", data_dir, launch).await
    }

    /// Starts `m2m serve --listen LISTEN` and waits until it prints its
    /// address.
    async fn start_with(listen: &str, data_dir: &Path, launch: Launch) -> (Server, String) {
        let data_dir = data_dir.to_owned();
        let listen = listen.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut server = Server::spawn_with(&listen, &data_dir, &launch);
            let url = server.wait_ready(&data_dir);
            (server, url)
        })
        .await
        .expect("the start task does not panic")
    }

    /// Reads the first stdout line, `m2m serving on http://ADDR (data in DIR)`.
    fn wait_ready(&mut self, data_dir: &Path) -> String {
        let line = match self.stdout.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(e) => {
                let _ = self.child.kill();
                let status = self.child.wait();
                panic!(
                    "m2m serve did not print its address ({e}); exit: {status:?}; stderr:\n{}",
                    self.finished_stderr()
                );
            }
        };
        let rest = line
            .strip_prefix("m2m serving on http://")
            .unwrap_or_else(|| {
                panic!("unexpected first line {line:?}; stderr:\n{}", self.stderr())
            });
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
        format!("http://{addr}")
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as `kill -9` or the OOM killer would.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL is sent");
        self.child.wait().expect("the killed process is reaped");
    }

    /// Sends SIGTERM, as systemd or `docker stop` would. (The workspace
    /// forbids `unsafe`, hence `kill(1)` rather than `libc::kill`.)
    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// Waits for the process to exit on its own, at most `timeout`.
    async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stderr so far.
    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// All of stderr, once the process has exited (the pipe then closes).
    fn finished_stderr(&mut self) -> String {
        if let Some(reader) = self.stderr_reader.take() {
            // A grandchild could keep the pipe open; do not wait for ever.
            let deadline = Instant::now() + Duration::from_secs(5);
            while !reader.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if reader.is_finished() {
                let _ = reader.join();
            }
        }
        self.stderr()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Typed requests to one server.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(base: &str) -> Api {
        Api {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("a client"),
            base: base.to_owned(),
        }
    }

    async fn register(&self, username: &str) {
        let r = self
            .http
            .post(format!("{}/v1/users", self.base))
            .json(&json!({"username": username, "password": PASSWORD}))
            .send()
            .await
            .expect("POST /v1/users");
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        assert_eq!(status, 201, "register: {body}");
    }

    async fn login(&self, username: &str) -> String {
        let r = self
            .http
            .post(format!("{}/v1/login", self.base))
            .json(&json!({"username": username, "password": PASSWORD}))
            .send()
            .await
            .expect("POST /v1/login");
        let status = r.status();
        let body: Value = r.json().await.expect("a JSON login answer");
        assert_eq!(status, 200, "login: {body}");
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token in {body}"))
            .to_owned()
    }

    /// Posts a game; returns the accepted game_id (asserting the 202).
    async fn submit(&self, token: &str, body: String) -> String {
        let r = self
            .http
            .post(format!("{}/v1/games", self.base))
            .bearer_auth(token)
            .header("Content-Type", "application/json")
            .body(body)
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
        assert!(v["event_id"].is_string(), "{v}");
        let game_id = v["game_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no game_id in {v}"))
            .to_owned();
        assert_eq!(
            location.as_deref(),
            Some(format!("/v1/games/{game_id}").as_str())
        );
        game_id
    }

    /// Submits `n` small distinct games at once; returns their game_ids.
    async fn submit_many(self: &Arc<Self>, token: &str, n: u64) -> Vec<String> {
        let mut tasks = tokio::task::JoinSet::new();
        for seed in 0..n {
            let api = self.clone();
            let token = token.to_owned();
            tasks.spawn(async move { api.submit(&token, small_game(seed)).await });
        }
        let mut ids = Vec::new();
        while let Some(r) = tasks.join_next().await {
            ids.push(r.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())));
        }
        ids
    }

    /// One page of `/v1/sync`: the status and the body.
    async fn sync_page(&self, token: &str, since: Option<&str>) -> (u16, Value) {
        let mut req = self
            .http
            .get(format!("{}/v1/sync", self.base))
            .bearer_auth(token)
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
    async fn sync_from(&self, token: &str, since: Option<String>) -> (Vec<Value>, Option<String>) {
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

    async fn game(&self, token: &str, game_id: &str) -> Value {
        let r = self
            .http
            .get(format!("{}/v1/games/{game_id}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET /v1/games/{id}");
        let status = r.status();
        let body: Value = r.json().await.expect("a JSON game");
        assert_eq!(status, 200, "game {game_id}: {body}");
        body
    }

    /// Polls the sync feed until every game of `ids` has a `processed`
    /// change, at most [`PROCESS_TIMEOUT`]. Returns the whole feed read.
    async fn wait_processed(&self, token: &str, ids: &[String], server: &Server) -> Vec<Value> {
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        let mut feed = Vec::new();
        let mut cursor = None;
        loop {
            let (changes, next) = self.sync_from(token, cursor).await;
            cursor = next;
            feed.extend(changes);
            if let Some(failed) = feed.iter().find(|c| c["status"] == "failed") {
                panic!("a game failed: {failed}");
            }
            let processed: HashSet<&str> = feed
                .iter()
                .filter(|c| c["status"] == "processed")
                .filter_map(|c| c["game_id"].as_str())
                .collect();
            let missing: Vec<&String> = ids
                .iter()
                .filter(|id| !processed.contains(id.as_str()))
                .collect();
            if missing.is_empty() {
                return feed;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} of {} accepted games not processed after {PROCESS_TIMEOUT:?}: {missing:?}\n\
                     server stderr:\n{}",
                    missing.len(),
                    ids.len(),
                    server.stderr()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// A 10 s game at 100 Hz (16 channels, about 130 kB of JSON); the seed
/// makes each one different.
fn small_game(seed: u64) -> String {
    GameSpec {
        duration_s: 10.0,
        seed,
        ..GameSpec::standard()
    }
    .submission_json("pinch-garden", 100.0 + seed as f64)
}

/// How often each game appears in a feed.
fn occurrences(feed: &[Value]) -> HashMap<String, usize> {
    let mut n = HashMap::new();
    for c in feed {
        let id = c["game_id"]
            .as_str()
            .unwrap_or_else(|| panic!("a change without game_id: {c}"));
        *n.entry(id.to_owned()).or_insert(0) += 1;
    }
    n
}

/// The log line of a start that found games still queued, if any.
fn republished_line(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .find(|l| l.contains("republishing the events of games still queued"))
        .map(str::to_owned)
}

/// Each game shows `processed` with metrics of a 10 s game.
async fn assert_processed_games(api: &Api, token: &str, ids: &[String]) {
    for id in ids {
        let game = api.game(token, id).await;
        assert_eq!(game["status"], "processed", "{id}: {game}");
        assert_eq!(game["metrics"]["duration_s"], 10.0, "{id}: {game}");
        assert!(game.get("error").is_none(), "{id}: {game}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_server_loses_no_accepted_game() {
    const GAMES: u64 = 40;
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();

    // One analysis at a time, so that the kill is likely to find games
    // still queued.
    let (mut server, base) = Server::start(dir.path(), &["--concurrency", "1"]).await;
    let api = Arc::new(Api::new(&base));
    api.register("kill-patient").await;
    let old_token = api.login("kill-patient").await;
    let accepted = api.submit_many(&old_token, GAMES).await;
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

    let (server, base) = Server::start(dir.path(), &[]).await;
    let api = Api::new(&base);
    let token = api.login("kill-patient").await;
    // The secret is kept in the data directory: the old token still works.
    let (status, page) = api.sync_page(&old_token, None).await;
    assert_eq!(status, 200, "the token from before the kill: {page}");

    api.wait_processed(&token, &accepted, &server).await;
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
    assert_processed_games(&api, &token, &accepted).await;

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

    let (mut server, base) = Server::start(dir.path(), &["--concurrency", "1"]).await;
    let api = Arc::new(Api::new(&base));
    api.register("term-patient").await;
    let token = api.login("term-patient").await;
    let accepted = api.submit_many(&token, 3).await;

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

    let (server, base) = Server::start(dir.path(), &[]).await;
    let api = Api::new(&base);
    let token = api.login("term-patient").await;
    let feed = api.wait_processed(&token, &accepted, &server).await;
    let counts = occurrences(&feed);
    for id in &accepted {
        assert_eq!(counts.get(id), Some(&1), "game {id} in the feed: {feed:#?}");
    }
    assert_processed_games(&api, &token, &accepted).await;
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

    let mut server = Server::spawn(&addr, dir.path(), &[]);
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
    let (_server, base) = Server::start(dir.path(), &[]).await;
    let api = Arc::new(Api::new(&base));
    api.register("metrics-patient").await;
    let token = api.login("metrics-patient").await;
    api.submit_many(&token, 1).await;
    let text = api
        .http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
async fn refused(mut server: Server, what: &str) -> String {
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
    let launch = Launch {
        extra: vec!["--concurrency".into(), "2".into()],
        stderr_lines: Some(2),
    };
    let (mut server, base) = Server::start_with("127.0.0.1:0", dir.path(), launch).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server
        .stderr_reader
        .as_ref()
        .is_some_and(JoinHandle::is_finished)
    {
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
    let token = api.login("pipe-patient").await;
    let accepted = api.submit_many(&token, 3).await;
    let feed = api.wait_processed(&token, &accepted, &server).await;
    let counts = occurrences(&feed);
    for id in &accepted {
        assert_eq!(counts.get(id), Some(&1), "game {id} in the feed: {feed:#?}");
    }
    assert_processed_games(&api, &token, &accepted).await;

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
    let (mut first, base) = Server::start(dir.path(), &[]).await;

    let second = Server::spawn("127.0.0.1:0", dir.path(), &[]);
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
    let token = api.login("lock-patient").await;
    let (status, _) = api.sync_page(&token, None).await;
    assert_eq!(status, 200);

    // The lock goes with its process, even a killed one.
    first.kill();
    let (_third, base) = Server::start(dir.path(), &[]).await;
    let api = Api::new(&base);
    api.login("lock-patient").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_listen_address_may_be_a_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, base) = Server::start_with("localhost:0", dir.path(), Launch::default()).await;
    let addr: std::net::SocketAddr = base["http://".len()..].parse().unwrap();
    assert!(addr.ip().is_loopback(), "localhost served on {addr}");
    let r = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(r.status(), 200);

    let other = tempfile::tempdir().unwrap();
    let bad = "no-such-host.invalid:8080";
    let stderr = refused(Server::spawn(bad, other.path(), &[]), "an unknown host").await;
    assert!(
        stderr.contains(&format!("cannot listen on {bad}")),
        "stderr does not name {bad}:\n{stderr}"
    );
}
