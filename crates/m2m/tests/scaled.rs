//! The scaled-out deployment as an operator runs it: `m2m gateway` ×N and
//! `m2m processor` ×M as real processes, a real RabbitMQ broker and one
//! SQLite file (or, for one test, a MongoDB database), stopped by SIGKILL
//! and by a broker restart. These are the tests of the promise that an
//! accepted game (a 202) is never lost and that every gateway hears about
//! every game.
//!
//! Needs RabbitMQ at 127.0.0.1:5672 (guest/guest) and `rabbitmqctl`. Each
//! test gets its own vhost (deleted at the end), temporary directory and
//! SQLite file; the MongoDB test runs only when `M2M_TEST_MONGODB_URL` names
//! a server, on a database of its own (dropped at the end). The tests run one at a time (one of them stops the broker),
//! serialised by [`SERIAL`]. When the broker is not reachable they are
//! skipped with a printed reason, except under `CI=true`, where that is a
//! failure.

use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use m2m_synth::GameSpec;
use m2m_testkit::{
    logs, m2m_command, ten_second_game, Api, Proc, POLL, PROCESS_TIMEOUT, START_TIMEOUT,
};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[cfg(feature = "mongodb")]
#[path = "support/mongodb.rs"]
mod mongodb_support;
#[cfg(feature = "mongodb")]
use mongodb_support::DropDatabase;

const BROKER_ADDR: &str = "127.0.0.1:5672";
/// How long a gateway may take to answer `/readyz` 200 (its bus connects in
/// the background).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Shared by every gateway of a test, as a deployment shares it.
const JWT_SECRET: &str = "scaled-test-secret-0123456789-abcdefghijklmnop";
/// The processing queue, its exchange and routing key, and the dead letters
/// (docs/api.md, "RabbitMQ topology").
const PROCESSING: &str = "m2m.processing";
const ROUTING_KEY: &str = "game.submitted";
const DEAD_LETTERS: &str = "m2m.processing.dead";

/// One test at a time: the broker restart test stops the broker for
/// everyone, and two tests at once would not fit in two cores anyway. A
/// `std` mutex, taken outside any runtime, because each test owns its own.
static SERIAL: Mutex<()> = Mutex::new(());

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

// ---------------------------------------------------------------------------
// The broker: rabbitmqctl, vhosts, reachability
// ---------------------------------------------------------------------------

/// Runs a command, at most `timeout`; returns its stdout, or why it failed
/// (with its stderr).
fn run_bounded(cmd: &mut Command, what: &str, timeout: Duration) -> Result<String, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    // Read the pipes in threads: a child that writes a lot must not block,
    // and a grandchild holding a pipe open must not block us.
    let read = |mut pipe: Box<dyn Read + Send>| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut s = String::new();
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            s.push_str(&String::from_utf8_lossy(&buf));
            let _ = tx.send(s);
        });
        rx
    };
    let out = read(Box::new(child.stdout.take().expect("piped")));
    let err = read(Box::new(child.stderr.take().expect("piped")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what}: still running after {timeout:?}; killed"));
            }
            Err(e) => return Err(format!("{what}: {e}")),
        }
    };
    let grace = Duration::from_secs(2);
    let stdout = out.recv_timeout(grace).unwrap_or_default();
    let stderr = err.recv_timeout(grace).unwrap_or_default();
    if status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{what}: {status}; stderr: {}; stdout: {}",
            stderr.trim(),
            stdout.trim()
        ))
    }
}

fn rabbitmqctl(args: &[&str], timeout: Duration) -> Result<String, String> {
    run_bounded(
        Command::new("rabbitmqctl").args(args),
        &format!("rabbitmqctl {}", args.join(" ")),
        timeout,
    )
}

/// Why the broker cannot be used, if it cannot.
fn broker_unreachable() -> Option<String> {
    let addr = BROKER_ADDR.parse().expect("a socket address");
    if let Err(e) = TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
        return Some(format!("TCP connect: {e}"));
    }
    rabbitmqctl(&["status"], Duration::from_secs(30)).err()
}

/// A vhost of its own for one test, deleted on drop (with everything in
/// it), so runs never see each other's queues and leave nothing behind.
struct Vhost {
    name: String,
    /// `amqp://guest:guest@127.0.0.1:5672/<name>`
    url: String,
}

impl Vhost {
    fn create() -> Vhost {
        let name = format!("m2m-test-{}", uuid::Uuid::now_v7());
        let ctl = Duration::from_secs(30);
        rabbitmqctl(&["add_vhost", &name], ctl).unwrap_or_else(|e| panic!("{e}"));
        let vhost = Vhost {
            url: format!("amqp://guest:guest@{BROKER_ADDR}/{name}"),
            name,
        };
        rabbitmqctl(
            &[
                "set_permissions",
                "-p",
                &vhost.name,
                "guest",
                ".*",
                ".*",
                ".*",
            ],
            ctl,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        vhost
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        if let Err(e) = rabbitmqctl(&["delete_vhost", &self.name], Duration::from_secs(30)) {
            eprintln!("warning: vhost {} was not deleted: {e}", self.name);
        }
    }
}

/// Starts the broker app again on drop, unless the test has seen it come
/// back itself: a failing broker-restart test must not leave the broker
/// stopped for every other test on the machine.
struct BrokerRestart {
    restarted: bool,
}

impl BrokerRestart {
    fn stop_app() -> BrokerRestart {
        let guard = BrokerRestart { restarted: false };
        rabbitmqctl(&["stop_app"], Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"));
        guard
    }

    fn start_app(&mut self) {
        let ctl = Duration::from_secs(60);
        rabbitmqctl(&["start_app"], ctl).unwrap_or_else(|e| panic!("{e}"));
        rabbitmqctl(&["await_startup"], ctl).unwrap_or_else(|e| panic!("{e}"));
        self.restarted = true;
    }
}

impl Drop for BrokerRestart {
    fn drop(&mut self) {
        if self.restarted {
            return;
        }
        eprintln!("restarting the broker app (the test did not)");
        let ctl = Duration::from_secs(60);
        for args in [&["start_app"][..], &["await_startup"][..]] {
            if let Err(e) = rabbitmqctl(args, ctl) {
                eprintln!("warning: {e}");
            }
        }
    }
}

/// What every test holds: its turn, its vhost and its directory. Fields
/// drop in order: the directory, then the vhost, then the turn.
struct TestEnv {
    name: &'static str,
    started: Instant,
    dir: tempfile::TempDir,
    /// Every role's `--database-url`: the SQLite file in `dir`, unless a
    /// test points it elsewhere.
    database_url: String,
    vhost: Vhost,
    _turn: MutexGuard<'static, ()>,
}

impl TestEnv {
    /// Waits for its turn and checks the broker; `None` means skip (the
    /// reason is printed). Panics instead under `CI=true`.
    fn begin(name: &'static str) -> Option<TestEnv> {
        let turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        if let Some(reason) = broker_unreachable() {
            let message = format!("RabbitMQ is not reachable at {BROKER_ADDR} ({reason})");
            if in_ci() {
                panic!("{name}: {message}; CI=true, so this is a failure");
            }
            println!("skipping {name}: {message}");
            return None;
        }
        let vhost = Vhost::create();
        println!("{name}: vhost {}", vhost.name);
        let dir = tempfile::tempdir().expect("a temporary directory");
        Some(TestEnv {
            name,
            started,
            database_url: format!("sqlite://{}", dir.path().join("m2m.db").display()),
            dir,
            vhost,
            _turn: turn,
        })
    }

    fn database_url(&self) -> String {
        self.database_url.clone()
    }

    fn progress(&self, what: impl std::fmt::Display) {
        println!(
            "{} [{:5.1}s] {what}",
            self.name,
            self.started.elapsed().as_secs_f64()
        );
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

/// `m2m <role>` with a clean, predictable environment.
fn m2m(role: &str, env: &TestEnv) -> Command {
    let mut cmd = m2m_command(env!("CARGO_BIN_EXE_m2m"));
    cmd.arg(role)
        .args(["--amqp-url", &env.vhost.url])
        .args(["--database-url", &env.database_url()]);
    cmd
}

/// Starts `m2m gateway` on a free port; returns it and its base URL.
async fn start_gateway(env: &TestEnv, name: &str) -> (Proc, String) {
    start_gateway_on(env, name, "127.0.0.1:0").await
}

/// Starts `m2m gateway --listen LISTEN`; returns it and its base URL.
async fn start_gateway_on(env: &TestEnv, name: &str, listen: &str) -> (Proc, String) {
    let mut cmd = m2m("gateway", env);
    cmd.args(["--listen", listen])
        .env("M2M_JWT_SECRET", JWT_SECRET);
    let mut gateway = Proc::spawn(name, &mut cmd);
    let line = gateway
        .wait_line("m2m gateway serving on http://", START_TIMEOUT)
        .await;
    let addr: std::net::SocketAddr = line["m2m gateway serving on http://".len()..]
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
    assert_ne!(addr.port(), 0, "{line}");
    env.progress(format!("{name} serving on {addr}"));
    (gateway, format!("http://{addr}"))
}

/// Starts `m2m processor` and waits until it says it consumes.
async fn start_processor(env: &TestEnv, name: &str, extra: &[&str]) -> Proc {
    let mut cmd = m2m("processor", env);
    cmd.args(extra);
    let mut processor = Proc::spawn(name, &mut cmd);
    let line = processor
        .wait_line("m2m processor consuming with concurrency ", START_TIMEOUT)
        .await;
    env.progress(format!("{name}: {line}"));
    processor
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

/// How many distinct games of a feed are processed.
fn processed_count(feed: &[Value]) -> usize {
    feed.iter()
        .filter(|c| c["status"] == "processed")
        .filter_map(|c| c["game_id"].as_str())
        .collect::<HashSet<_>>()
        .len()
}

// ---------------------------------------------------------------------------
// AMQP, from the test's side
// ---------------------------------------------------------------------------

async fn amqp_channel(url: &str) -> (Connection, Channel) {
    let conn = tokio::time::timeout(
        Duration::from_secs(10),
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
    .expect("the broker answers within 10 s")
    .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    let channel = conn.create_channel().await.expect("a channel");
    (conn, channel)
}

/// The message count of a queue (a passive declare: it must exist).
async fn queue_count(channel: &Channel, queue: &str) -> u32 {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("passive declare of {queue}: {e}"))
        .message_count()
}

fn header<'a>(props: &'a BasicProperties, name: &str) -> Option<&'a AMQPValue> {
    props.headers().as_ref()?.inner().get(name)
}

/// The header as text, if it is a string.
fn header_text(props: &BasicProperties, name: &str) -> Option<String> {
    match header(props, name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// A message taken off the processing queue, exactly as it was published.
struct Taken {
    body: Vec<u8>,
    props: BasicProperties,
}

/// Takes `count` events off the processing queue (acknowledged: they are
/// the test's now), waiting at most 20 s for them to be published; returns
/// them by game_id.
async fn take_events(channel: &Channel, count: usize, procs: &[&Proc]) -> HashMap<String, Taken> {
    let mut taken = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while taken.len() < count {
        match channel
            .basic_get(PROCESSING.into(), BasicGetOptions { no_ack: false })
            .await
            .expect("basic.get")
        {
            Some(m) => {
                m.delivery
                    .ack(BasicAckOptions::default())
                    .await
                    .expect("basic.ack");
                let body: Value = serde_json::from_slice(&m.delivery.data).expect("a JSON event");
                let game_id = body["game_id"].as_str().expect("a game_id").to_owned();
                taken.insert(
                    game_id,
                    Taken {
                        body: m.delivery.data.clone(),
                        props: m.delivery.properties.clone(),
                    },
                );
            }
            None if Instant::now() < deadline => tokio::time::sleep(POLL).await,
            None => panic!(
                "only {} of {count} events reached {PROCESSING} within 20 s\n{}",
                taken.len(),
                logs(procs)
            ),
        }
    }
    taken
}

/// Publishes with a confirm; panics unless the broker acks and routes it.
async fn publish_confirmed(channel: &Channel, payload: &[u8], props: BasicProperties) {
    let confirm = channel
        .basic_publish(
            PROCESSING.into(),
            ROUTING_KEY.into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            payload,
            props,
        )
        .await
        .expect("basic.publish")
        .await
        .expect("a publisher confirm");
    assert!(
        matches!(confirm, Confirmation::Ack(None)),
        "the broker did not take the message: {confirm:?}"
    );
}

// ---------------------------------------------------------------------------
// Python
// ---------------------------------------------------------------------------

/// A virtualenv with `tests/python/requirements.txt` installed, under the
/// target directory, reused while the requirements are unchanged.
fn python_venv() -> Result<PathBuf, String> {
    let python_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let requirements = python_dir.join("requirements.txt");
    let wanted = std::fs::read_to_string(&requirements)
        .map_err(|e| format!("cannot read {}: {e}", requirements.display()))?;
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .to_owned();
    let venv = target.join("py-venv-scaled");
    let python = venv.join("bin/python");
    let stamp = venv.join("installed-requirements.txt");
    if python.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(python);
    }
    let _ = std::fs::remove_dir_all(&venv);
    let t0 = Instant::now();
    run_bounded(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv",
        Duration::from_secs(60),
    )?;
    run_bounded(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "-q",
                "-r",
            ])
            .arg(&requirements),
        "pip install -r tests/python/requirements.txt",
        Duration::from_secs(180),
    )?;
    std::fs::write(&stamp, &wanted)
        .map_err(|e| format!("cannot write {}: {e}", stamp.display()))?;
    println!(
        "installed the Python requirements into {} in {:?}",
        venv.display(),
        t0.elapsed()
    );
    Ok(python)
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

#[test]
fn a_game_posted_at_one_gateway_is_announced_at_another() {
    let Some(env) = TestEnv::begin("a_game_posted_at_one_gateway_is_announced_at_another") else {
        return;
    };
    runtime().block_on(async {
        let (gateway_a, base_a) = start_gateway(&env, "gateway-a").await;
        let (gateway_b, base_b) = start_gateway(&env, "gateway-b").await;
        let p1 = start_processor(&env, "processor-1", &[]).await;
        let p2 = start_processor(&env, "processor-2", &[]).await;
        let procs = [&gateway_a, &gateway_b, &p1, &p2];
        let (a, b) = (Api::new(&base_a), Api::new(&base_b));
        a.wait_readyz(200, READY_TIMEOUT, &procs).await;
        b.wait_readyz(200, READY_TIMEOUT, &procs).await;
        env.progress("both gateways ready");

        let token = a.user("two-gateways").await;
        // Tokens are signed with the shared secret: A's works at B.
        let (status, page) = b.sync_page(&token, None).await;
        assert_eq!(status, 200, "A's token at B: {page}");
        assert_eq!(page["changes"], json!([]), "{page}");

        let mut events = b.events(&token, None).await;
        env.progress("event stream open at B");
        let accepted = a.submit_game(&token, ten_second_game(7)).await;
        env.progress(format!("game {} accepted at A", accepted.game_id));

        let deadline = Instant::now() + Duration::from_secs(30);
        let event = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(event) = events.next_event(left).await else {
                panic!(
                    "no event for game {} at B within 30 s\n{}",
                    accepted.game_id,
                    logs(&procs)
                );
            };
            let data: Value = serde_json::from_str(&event.data)
                .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {event:?}"));
            if data["game_id"] == accepted.game_id.as_str() {
                break (event, data);
            }
            env.progress(format!("(another event: {event:?})"));
        };
        let (event, change) = event;
        env.progress(format!(
            "B announced: event: {:?}, id: {:?}",
            event.event, event.id
        ));
        assert_eq!(event.event.as_deref(), Some("game.processed"), "{event:?}");
        assert_eq!(change["status"], "processed", "{change}");
        assert_eq!(change["metrics"]["duration_s"], 10.0, "{change}");
        assert!(change["processed_at"].is_string(), "{change}");
        assert_eq!(
            event.id.as_deref(),
            change["cursor"].as_str(),
            "the event id is the change's cursor: {event:?}"
        );
        // The event is the change the feed has, at either gateway.
        let feed_b = b.feed(&token).await;
        assert_eq!(feed_b, vec![change.clone()], "B's feed");
        assert_eq!(a.feed(&token).await, feed_b, "A's feed");
    });
    env.progress("done (the whole test, set-up included)");
}

#[test]
fn a_killed_processor_loses_nothing() {
    const GAMES: u64 = 30;
    let Some(env) = TestEnv::begin("a_killed_processor_loses_nothing") else {
        return;
    };
    runtime().block_on(async {
        let (gateway, base) = start_gateway(&env, "gateway").await;
        // One game at a time each, so the kill is likely to find one in
        // flight and many still queued.
        let one = ["--concurrency", "1"];
        let mut victim = start_processor(&env, "processor-1 (killed)", &one).await;
        let survivor = start_processor(&env, "processor-2", &one).await;
        let api = Arc::new(Api::new(&base));
        api.wait_readyz(200, READY_TIMEOUT, &[&gateway]).await;
        let token = api.user("kill-processor").await;

        let submitting = {
            let (api, token) = (api.clone(), token.clone());
            tokio::spawn(async move { api.submit_many(&token, 0..GAMES).await })
        };
        // Kill once processing is under way.
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        let done_at_kill = loop {
            let done = processed_count(&api.feed(&token).await);
            if done >= 3 {
                break done;
            }
            if Instant::now() >= deadline {
                panic!(
                    "fewer than 3 games processed after {PROCESS_TIMEOUT:?}\n{}",
                    logs(&[&gateway, &victim, &survivor])
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        victim.kill();
        let victim_handled = victim.stderr().matches("game processed").count();
        env.progress(format!(
            "SIGKILLed {} with {done_at_kill} of {GAMES} games processed \
             ({victim_handled} of them by the killed one)",
            victim.name
        ));
        let replacement = start_processor(&env, "processor-3 (replacement)", &one).await;

        let accepted = submitting
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        assert_eq!(accepted.len(), GAMES as usize);
        assert_eq!(
            accepted.iter().collect::<HashSet<_>>().len(),
            accepted.len(),
            "game_ids are distinct"
        );
        env.progress(format!("all {GAMES} games accepted"));

        api.assert_all_processed_once(&token, &accepted, &[&gateway, &survivor, &replacement])
            .await;
        let by = |p: &Proc| p.stderr().matches("game processed").count();
        env.progress(format!(
            "all {GAMES} processed once each; log lines \"game processed\": killed {}, \
             survivor {}, replacement {}",
            by(&victim),
            by(&survivor),
            by(&replacement)
        ));
        // What the killed one held unacked comes back as a redelivery
        // (attempt 2, from the quorum queue's x-delivery-count).
        let redelivered = |p: &Proc| {
            p.stderr()
                .lines()
                .filter(|l| l.contains("attempt=2") && l.contains("game processed"))
                .count()
        };
        env.progress(format!(
            "games processed on a redelivery: {}",
            redelivered(&survivor) + redelivered(&replacement)
        ));
    });
    env.progress("done (the whole test, set-up included)");
}

/// A message left in the processing queue, as `basic.get` saw it.
#[derive(Debug)]
struct Left {
    game_id: String,
    redelivered: bool,
    /// The quorum queue's `x-delivery-count`: earlier deliveries.
    delivery_count: i64,
}

/// Takes every message of the processing queue without settling it (they
/// go back when `channel` closes) and says what each is.
async fn take_all_unsettled(channel: &Channel) -> Vec<Left> {
    let mut left = Vec::new();
    while let Some(m) = channel
        .basic_get(PROCESSING.into(), BasicGetOptions { no_ack: false })
        .await
        .expect("basic.get")
    {
        let event: Value = serde_json::from_slice(&m.delivery.data).expect("a JSON event");
        left.push(Left {
            game_id: event["game_id"]
                .as_str()
                .unwrap_or_else(|| panic!("no game_id in {event}"))
                .to_owned(),
            redelivered: m.delivery.redelivered,
            delivery_count: match header(&m.delivery.properties, "x-delivery-count") {
                None => 0,
                Some(AMQPValue::LongLongInt(n)) => *n,
                Some(AMQPValue::LongInt(n)) => i64::from(*n),
                Some(AMQPValue::LongUInt(n)) => i64::from(*n),
                Some(other) => panic!("x-delivery-count {other:?}"),
            },
        });
    }
    left
}

#[test]
fn a_processor_stopped_with_sigterm_settles_all_it_took() {
    const GAMES: u64 = 60;
    let Some(env) = TestEnv::begin("a_processor_stopped_with_sigterm_settles_all_it_took") else {
        return;
    };
    runtime().block_on(async {
        let (gateway, base) = start_gateway(&env, "gateway").await;
        let api = Arc::new(Api::new(&base));
        api.wait_readyz(200, READY_TIMEOUT, &[&gateway]).await;
        let token = api.user("stop-processor").await;

        // The whole load is queued before a processor starts, so the
        // SIGTERM finds it busy with several games and many waiting.
        let accepted = api.submit_many(&token, 0..GAMES).await;
        let (conn, channel) = amqp_channel(&env.vhost.url).await;
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        while queue_count(&channel, PROCESSING).await < GAMES as u32 {
            assert!(
                Instant::now() < deadline,
                "the {GAMES} events were not all published\n{}",
                logs(&[&gateway])
            );
            tokio::time::sleep(POLL).await;
        }
        env.progress(format!("{GAMES} games queued"));

        let mut stopped =
            start_processor(&env, "processor-1 (stopped)", &["--concurrency", "4"]).await;
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        while stopped.stderr().matches("game processed").count() < 2 {
            assert!(
                Instant::now() < deadline,
                "the processor processed nothing\n{}",
                logs(&[&gateway, &stopped])
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stopped.terminate();
        let status = stopped.wait_exit(Duration::from_secs(60)).await;
        let status = status.unwrap_or_else(|| {
            panic!(
                "the processor still runs 60 s after SIGTERM\n{}",
                logs(&[&stopped])
            )
        });
        assert!(
            status.success(),
            "exit after SIGTERM: {status}\n{}",
            logs(&[&stopped])
        );
        let handled = stopped.stderr().matches("game processed").count();

        // Every game it said it processed is saved ...
        let saved: HashSet<String> = api
            .feed(&token)
            .await
            .iter()
            .filter(|c| c["status"] == "processed")
            .filter_map(|c| c["game_id"].as_str().map(str::to_owned))
            .collect();
        env.progress(format!(
            "stopped with SIGTERM after {handled} games (\"game processed\"); {} saved",
            saved.len()
        ));
        assert_eq!(saved.len(), handled, "{}", logs(&[&stopped]));
        // ... and acknowledged: none of them is back in the queue (an ack
        // lost to a channel closed too early hands the message back, and
        // the game would be processed twice).
        let left = take_all_unsettled(&channel).await;
        assert!(
            !left.is_empty(),
            "the processor finished all {GAMES} games before the SIGTERM: nothing was tested"
        );
        let back: Vec<&Left> = left.iter().filter(|l| saved.contains(&l.game_id)).collect();
        assert!(
            back.is_empty(),
            "{} games saved by the stopped processor are queued again (acks lost): {back:#?}\n{}",
            back.len(),
            logs(&[&stopped])
        );
        assert_eq!(saved.len() + left.len(), GAMES as usize, "saved + queued");
        assert!(
            !stopped.stderr().contains("could not settle"),
            "{}",
            logs(&[&stopped])
        );
        // What the broker had sent when the cancel reached it never got to
        // the processor and is handed back: at most its prefetch.
        let redelivered = left
            .iter()
            .filter(|l| l.redelivered || l.delivery_count > 0)
            .count();
        assert!(
            redelivered <= 4,
            "{redelivered} messages handed back by a processor with prefetch 4: {left:#?}"
        );
        env.progress(format!(
            "{} games left in the queue, {redelivered} of them sent to the stopped processor \
             after it stopped taking deliveries",
            left.len()
        ));
        // Hand them back and let another processor finish: each game is
        // processed once in all.
        channel
            .close(200, "done".into())
            .await
            .expect("channel.close");
        conn.close(200, "done".into())
            .await
            .expect("connection.close");
        let other = start_processor(&env, "processor-2", &["--concurrency", "4"]).await;
        api.assert_all_processed_once(&token, &accepted, &[&gateway, &stopped, &other])
            .await;
        let by_other = other.stderr().matches("game processed").count();
        assert_eq!(
            handled + by_other,
            GAMES as usize,
            "games processed by the two processors\n{}",
            logs(&[&stopped, &other])
        );
    });
    env.progress("done (the whole test, set-up included)");
}

#[test]
fn a_gateway_listens_on_a_host_name() {
    let Some(env) = TestEnv::begin("a_gateway_listens_on_a_host_name") else {
        return;
    };
    runtime().block_on(async {
        let (gateway, base) = start_gateway_on(&env, "gateway", "localhost:0").await;
        let addr: std::net::SocketAddr = base["http://".len()..].parse().expect("an address");
        assert!(addr.ip().is_loopback(), "localhost served on {addr}");
        Api::new(&base)
            .wait_readyz(200, READY_TIMEOUT, &[&gateway])
            .await;
    });
}

#[test]
fn uploads_keep_being_accepted_while_the_broker_restarts() {
    const EACH: u64 = 4;
    let Some(env) = TestEnv::begin("uploads_keep_being_accepted_while_the_broker_restarts") else {
        return;
    };
    runtime().block_on(async {
        let (gateway, base) = start_gateway(&env, "gateway").await;
        let processor = start_processor(&env, "processor", &[]).await;
        let procs = [&gateway, &processor];
        let api = Arc::new(Api::new(&base));
        api.wait_readyz(200, READY_TIMEOUT, &procs).await;
        let token = api.user("broker-restart").await;

        let mut accepted = api.submit_many(&token, 0..EACH).await;
        env.progress(format!("{EACH} games accepted before the stop"));

        let mut broker = BrokerRestart::stop_app();
        env.progress("rabbitmqctl stop_app done");
        // Every upload is still accepted, and /readyz says the bus is gone.
        let mut saw_503 = None;
        let t_stop = Instant::now();
        let mut during = Vec::new();
        for seed in EACH..2 * EACH {
            during.push(api.submit_game(&token, ten_second_game(seed)).await.game_id);
            if saw_503.is_none() && api.readyz().await == Some(503) {
                saw_503 = Some(t_stop.elapsed());
            }
        }
        env.progress(format!("{EACH} games accepted while the broker is stopped"));
        if saw_503.is_none() {
            saw_503 = Some(
                api.wait_readyz(503, Duration::from_secs(20), &procs).await + t_stop.elapsed(),
            );
        }
        env.progress(format!(
            "/readyz answered 503 {:?} after the stop",
            saw_503.unwrap_or_default()
        ));

        broker.start_app();
        env.progress("rabbitmqctl start_app + await_startup done");
        let t_back = Instant::now();
        let back = api.wait_readyz(200, PROCESS_TIMEOUT, &procs).await;
        env.progress(format!("/readyz answered 200 again after {back:?}"));

        accepted.extend(api.submit_many(&token, 2 * EACH..3 * EACH).await);
        env.progress(format!("{EACH} games accepted after the restart"));

        // How long each group takes once the broker is back (the games of
        // the outage wait in the outbox for the publisher).
        api.wait_finished(&token, &accepted, PROCESS_TIMEOUT, &procs)
            .await;
        env.progress(format!(
            "the games accepted before and after the outage finished {:?} after start_app",
            t_back.elapsed()
        ));
        // Once the broker is back, the stored backlog is published by the
        // publisher's next retry, not after a 30 s lease (that delay
        // was a bug: the events of the outage waited ~27 s).
        api.wait_finished(&token, &during, Duration::from_secs(15), &procs)
            .await;
        env.progress(format!(
            "the games accepted during the outage finished {:?} after start_app",
            t_back.elapsed()
        ));
        accepted.extend(during);
        api.assert_all_processed_once(&token, &accepted, &procs)
            .await;
        env.progress(format!("all {} games processed once each", accepted.len()));
    });
    env.progress("done (the whole test, set-up included)");
}

#[test]
fn a_poison_message_is_dead_lettered_and_its_game_failed() {
    const MAX_ATTEMPTS: usize = 3;
    let Some(env) = TestEnv::begin("a_poison_message_is_dead_lettered_and_its_game_failed") else {
        return;
    };
    runtime().block_on(async {
        let (gateway, base) = start_gateway(&env, "gateway").await;
        let api = Arc::new(Api::new(&base));
        api.wait_readyz(200, READY_TIMEOUT, &[&gateway]).await;
        let token = api.user("poison").await;
        let poison = api.submit_game(&token, ten_second_game(1)).await;
        let mut good = Vec::new();
        for seed in 2..5 {
            good.push(api.submit_game(&token, ten_second_game(seed)).await);
        }

        // Take the four events off the queue, as they were published.
        let (_conn, channel) = amqp_channel(&env.vhost.url).await;
        let mut taken: HashMap<String, (Value, BasicProperties)> =
            take_events(&channel, 4, &[&gateway])
                .await
                .into_iter()
                .map(|(game_id, e)| {
                    let body = serde_json::from_slice(&e.body).expect("a JSON event");
                    (game_id, (body, e.props))
                })
                .collect();
        env.progress("took the 4 events off the queue");

        // Corrupt P where the processor reads it: the event names the game,
        // whose samples are in the store. Its first channel's stored bytes
        // lose their last 4 there; the event itself is published again
        // unchanged.
        let (p_body, p_props) = taken.remove(&poison.game_id).expect("P was published");
        assert_eq!(p_body["event_id"], poison.event_id.as_str(), "{p_props:?}");
        let db = rusqlite::Connection::open(env.dir.path().join("m2m.db")).expect("the database");
        let short: String = db
            .query_row(
                "SELECT name FROM game_columns WHERE game_id = ?1 ORDER BY name LIMIT 1",
                [&poison.game_id],
                |row| row.get(0),
            )
            .expect("P's first channel");
        let cut = db
            .execute(
                "UPDATE game_columns SET data = substr(data, 1, length(data) - 4)
                 WHERE game_id = ?1 AND name = ?2",
                [&poison.game_id, &short],
            )
            .expect("cut the column");
        assert_eq!(cut, 1);
        drop(db);
        env.progress(format!(
            "P = game {}: its stored column {short} cut short by 4 bytes",
            poison.game_id
        ));
        let trace_id = header_text(&p_props, "trace_id").unwrap_or_default();
        let mut headers = FieldTable::default();
        headers.insert(
            "type".into(),
            AMQPValue::LongString("ProcessingEvent".into()),
        );
        headers.insert("trace_id".into(), AMQPValue::LongString(trace_id.into()));
        let event_props = |message_id: &str, headers: FieldTable| {
            BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_message_id(message_id.into())
                .with_headers(headers)
        };
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm.select");
        publish_confirmed(
            &channel,
            &serde_json::to_vec(&p_body).expect("JSON"),
            event_props(&poison.event_id, headers),
        )
        .await;
        for accepted in &good {
            let (body, props) = taken.remove(&accepted.game_id).expect("published");
            publish_confirmed(&channel, &serde_json::to_vec(&body).expect("JSON"), props).await;
        }
        let mut headers = FieldTable::default();
        headers.insert(
            "type".into(),
            AMQPValue::LongString("ProcessingEvent".into()),
        );
        let not_json_id = uuid::Uuid::now_v7().to_string();
        publish_confirmed(
            &channel,
            b"this is not JSON at all \xff\xfe",
            event_props(&not_json_id, headers),
        )
        .await;
        env.progress("published P (corrupt), the 3 others and one non-JSON message");

        let processor = start_processor(
            &env,
            "processor",
            &["--max-attempts", &MAX_ATTEMPTS.to_string()],
        )
        .await;
        let procs = [&gateway, &processor];
        let mut all: Vec<String> = good.iter().map(|a| a.game_id.clone()).collect();
        all.push(poison.game_id.clone());
        let feed = api
            .wait_finished(&token, &all, Duration::from_secs(30), &procs)
            .await;
        env.progress("all 4 games finished");

        // P failed, naming the column; the others were processed.
        let p = api.game(&token, &poison.game_id).await;
        assert_eq!(p["status"], "failed", "P: {p}");
        let error = p["error"]
            .as_str()
            .unwrap_or_else(|| panic!("P has no error: {p}"));
        assert!(
            error.contains("corrupt sensor column") && error.contains(&short),
            "P's error: {error}"
        );
        assert!(p.get("metrics").is_none(), "P: {p}");
        env.progress(format!("P failed: {error}"));
        let p_changes: Vec<&Value> = feed
            .iter()
            .filter(|c| c["game_id"] == poison.game_id.as_str())
            .collect();
        assert_eq!(p_changes.len(), 1, "P in the feed: {feed:#?}");
        assert_eq!(p_changes[0]["status"], "failed", "{feed:#?}");
        for accepted in &good {
            let game = api.game(&token, &accepted.game_id).await;
            assert_eq!(game["status"], "processed", "{game}");
        }

        // Exactly P and the non-JSON message are dead letters.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let dead = queue_count(&channel, DEAD_LETTERS).await;
            if dead >= 2 || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        // Settle time for a wrong third one to show up.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let dead = queue_count(&channel, DEAD_LETTERS).await;
        assert_eq!(dead, 2, "messages in {DEAD_LETTERS}\n{}", logs(&procs));
        assert_eq!(
            queue_count(&channel, PROCESSING).await,
            0,
            "left in {PROCESSING}"
        );

        // P was delivered MAX_ATTEMPTS times: the processor's log says so
        // (its span carries game_id and attempt).
        let stderr = processor.stderr();
        let about_p: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains(&format!("game_id={}", poison.game_id)))
            .collect();
        let retries: Vec<&&str> = about_p
            .iter()
            .filter(|l| l.contains("processing failed; will retry"))
            .collect();
        let give_ups: Vec<&&str> = about_p
            .iter()
            .filter(|l| l.contains("giving up on the event"))
            .collect();
        let report = about_p.join("\n");
        assert_eq!(retries.len(), MAX_ATTEMPTS - 1, "P's retries:\n{report}");
        assert_eq!(give_ups.len(), 1, "P's give-up:\n{report}");
        for attempt in 1..=MAX_ATTEMPTS {
            assert!(
                about_p
                    .iter()
                    .any(|l| l.contains(&format!("attempt={attempt}"))),
                "no line of P's attempt {attempt}:\n{report}"
            );
        }
        assert!(
            give_ups[0].contains(&format!("attempt={MAX_ATTEMPTS}")),
            "{report}"
        );
        env.progress(format!(
            "P delivered {MAX_ATTEMPTS} times, per the processor's log"
        ));

        // Look at the dead letters, and put them back.
        let mut dead_ids = Vec::new();
        let mut held = Vec::new();
        for _ in 0..2 {
            let m = channel
                .basic_get(DEAD_LETTERS.into(), BasicGetOptions { no_ack: false })
                .await
                .expect("basic.get")
                .expect("a dead letter");
            let props = &m.delivery.properties;
            let id = props.message_id().as_ref().map(|s| s.as_str().to_owned());
            env.progress(format!(
                "dead letter {}: x-delivery-count {:?}",
                id.as_deref().unwrap_or("(no message_id)"),
                header(props, "x-delivery-count")
            ));
            dead_ids.extend(id);
            held.push(m);
        }
        for m in held {
            m.delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
                .expect("basic.nack");
        }
        dead_ids.sort();
        let mut want = vec![poison.event_id.clone(), not_json_id.clone()];
        want.sort();
        assert_eq!(dead_ids, want, "the dead letters' message ids");
        let deadline = Instant::now() + Duration::from_secs(5);
        while queue_count(&channel, DEAD_LETTERS).await != 2 && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
        }
        assert_eq!(queue_count(&channel, DEAD_LETTERS).await, 2, "put back");
    });
    env.progress("done (the whole test, set-up included)");
}

#[test]
fn a_processor_takes_version_1_events_left_by_an_older_gateway() {
    let Some(env) = TestEnv::begin("a_processor_takes_version_1_events_left_by_an_older_gateway")
    else {
        return;
    };
    runtime().block_on(async {
        let (gateway, base) = start_gateway(&env, "gateway").await;
        let api = Api::new(&base);
        api.wait_readyz(200, READY_TIMEOUT, &[&gateway]).await;
        let token = api.user("rolling-upgrade").await;

        // Two games whose events an older gateway published, still queued
        // when the new processors start.
        let seeds = [21, 22];
        let mut old = Vec::new();
        for seed in seeds {
            let upload = ten_second_game(seed);
            let accepted = api.submit_game(&token, upload.clone()).await;
            old.push((accepted, upload));
        }
        let (_conn, channel) = amqp_channel(&env.vhost.url).await;
        let mut taken = take_events(&channel, old.len(), &[&gateway]).await;
        env.progress("took the 2 version-2 events off the queue");

        // Rewritten as version 1, which also carried every column: the
        // columns of the upload the test generated.
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm.select");
        for (accepted, upload) in &old {
            let Taken { body, props } = taken.remove(&accepted.game_id).expect("published");
            let mut event: Value = serde_json::from_slice(&body).expect("a JSON event");
            assert_eq!(event["version"], 2, "as published: {event}");
            assert_eq!(event["event_id"], accepted.event_id.as_str(), "{event}");
            assert!(event.get("channels").is_none(), "as published: {event}");
            let upload: Value = serde_json::from_str(upload).expect("the upload is JSON");
            let channels = &upload["channels"];
            assert_eq!(
                channels.as_object().map(|c| c.len()),
                Some(16),
                "16 columns"
            );
            event["version"] = json!(1);
            event["channels"] = channels.clone();
            let v1 = serde_json::to_vec(&event).expect("JSON");
            env.progress(format!(
                "game {}: version 1 of its event, {} bytes (version 2: {} bytes)",
                accepted.game_id,
                v1.len(),
                body.len()
            ));
            publish_confirmed(&channel, &v1, props).await;
        }

        // The same uploads again, whose events are version 2: what a
        // version-1 event must yield.
        let mut reference = Vec::new();
        for seed in seeds {
            reference.push(api.submit_game(&token, ten_second_game(seed)).await);
        }

        let processor = start_processor(&env, "processor", &[]).await;
        let procs = [&gateway, &processor];
        let ids: Vec<String> = old
            .iter()
            .map(|(a, _)| &a.game_id)
            .chain(reference.iter().map(|a| &a.game_id))
            .cloned()
            .collect();
        api.wait_finished(&token, &ids, Duration::from_secs(30), &procs)
            .await;
        env.progress("all 4 games finished");

        let mut metrics = Vec::new();
        for ((old, _), reference) in old.iter().zip(&reference) {
            let game = api.game(&token, &old.game_id).await;
            assert_eq!(game["status"], "processed", "{game}\n{}", logs(&procs));
            assert!(game.get("error").is_none(), "{game}");
            let want = api.game(&token, &reference.game_id).await;
            assert_eq!(want["status"], "processed", "{want}\n{}", logs(&procs));
            assert_eq!(want["metrics"]["duration_s"], 10.0, "{want}");
            assert_eq!(
                game["metrics"], want["metrics"],
                "the metrics of game {} (version-1 event) and of game {} (the same upload, \
                 version-2 event)",
                old.game_id, reference.game_id
            );
            // The processor says it processed the version-1 event itself.
            let line = format!("event_id={}", old.event_id);
            assert!(
                processor
                    .stderr()
                    .lines()
                    .any(|l| l.contains(&line) && l.contains("game processed")),
                "no \"game processed\" line with {line}\n{}",
                logs(&procs)
            );
            metrics.push(game["metrics"].clone());
        }
        // The comparison tells games apart: the two seeds' metrics differ
        // in more than the score.
        let mut unscored = metrics.clone();
        for m in &mut unscored {
            m.as_object_mut().expect("metrics").remove("score");
        }
        assert_ne!(
            unscored[0], unscored[1],
            "two different games, same metrics"
        );
        env.progress("both version-1 games processed with the metrics of their version-2 twins");

        assert_eq!(
            queue_count(&channel, PROCESSING).await,
            0,
            "left in {PROCESSING}"
        );
        assert_eq!(
            queue_count(&channel, DEAD_LETTERS).await,
            0,
            "dead letters\n{}",
            logs(&procs)
        );
    });
    env.progress("done (the whole test, set-up included)");
}

#[test]
fn an_event_on_the_bus_is_small_whatever_the_game_length() {
    /// The bound of docs/api.md and processing-event.schema.json.
    const MAX_EVENT_BYTES: usize = 2_048;
    /// The gateway's default `--body-limit`.
    const BODY_LIMIT: usize = 32 * 1024 * 1024;
    /// The fields of processing-event.schema.json (version 2): the ids and
    /// the game's description, none of them made of samples.
    const DESCRIPTIVE: [&str; 8] = [
        "type",
        "version",
        "event_id",
        "game_id",
        "user_id",
        "created_at",
        "game",
        "sample_rate_hz",
    ];
    let Some(env) = TestEnv::begin("an_event_on_the_bus_is_small_whatever_the_game_length") else {
        return;
    };
    runtime().block_on(async {
        let (gateway, base) = start_gateway(&env, "gateway").await;
        let api = Api::new(&base);
        api.wait_readyz(200, READY_TIMEOUT, &[&gateway]).await;
        let token = api.user("event-size").await;

        // The same game but for its length: 5 samples, and 10 minutes at
        // 100 Hz (60,000 samples in each of 16 channels).
        let spec = |duration_s| GameSpec {
            duration_s,
            seed: 9,
            ..GameSpec::standard()
        };
        let (short, long) = (spec(0.05), spec(600.0));
        assert_eq!((short.samples(), long.samples()), (5, 60_000));
        let short_upload = short.submission_json("pinch-garden", 42.0);
        let long_upload = long.submission_json("pinch-garden", 42.0);
        assert!(
            long_upload.len() < BODY_LIMIT,
            "the long upload ({} bytes) exceeds the body limit",
            long_upload.len()
        );
        let t0 = Instant::now();
        let short_game = api.submit_game(&token, short_upload.clone()).await;
        let long_game = api.submit_game(&token, long_upload.clone()).await;
        env.progress(format!(
            "uploads of {} and {} bytes accepted in {:?}",
            short_upload.len(),
            long_upload.len(),
            t0.elapsed()
        ));

        let (_conn, channel) = amqp_channel(&env.vhost.url).await;
        let mut taken = take_events(&channel, 2, &[&gateway]).await;
        let mut events = Vec::new();
        for (accepted, name) in [(&short_game, "short"), (&long_game, "long")] {
            let Taken { body, .. } = taken.remove(&accepted.game_id).expect("published");
            let event: Value = serde_json::from_slice(&body).expect("a JSON event");
            env.progress(format!("the {name} game's event: {} bytes", body.len()));
            assert!(
                body.len() <= MAX_EVENT_BYTES,
                "the {name} game's event is {} bytes: {}",
                body.len(),
                String::from_utf8_lossy(&body)
            );
            assert_eq!(event["event_id"], accepted.event_id.as_str(), "{event}");
            assert!(event.get("channels").is_none(), "{name}: {event}");
            events.push((body.len(), event));
        }

        // The sizes differ by no more than the descriptive fields do (the
        // timestamps' fractions of a second, say), not by the samples: any
        // other field, or one only the long game's event has, counts
        // against the bound.
        let (short_len, short_event) = &events[0];
        let (long_len, long_event) = &events[1];
        let text_len = |v: &Value| serde_json::to_string(v).expect("JSON").len();
        let descriptive: usize = DESCRIPTIVE
            .iter()
            .map(|k| text_len(&short_event[*k]).abs_diff(text_len(&long_event[*k])))
            .sum();
        let difference = short_len.abs_diff(*long_len);
        env.progress(format!(
            "the events differ by {difference} bytes, their descriptive fields by {descriptive}"
        ));
        assert!(
            difference <= descriptive,
            "the events differ by {difference} bytes, their descriptive fields by \
             {descriptive}:\n{short_event}\n{long_event}"
        );
    });
    env.progress("done (the whole test, set-up included)");
}

#[test]
fn a_python_consumer_can_join() {
    let Some(env) = TestEnv::begin("a_python_consumer_can_join") else {
        return;
    };
    let python = match python_venv() {
        Ok(p) => p,
        Err(e) if in_ci() => panic!("cannot set up the Python consumer: {e}"),
        Err(e) => {
            println!("skipping a_python_consumer_can_join: cannot set up Python ({e})");
            return;
        }
    };
    runtime().block_on(async {
        let (gateway, base) = start_gateway(&env, "gateway").await;
        let api = Api::new(&base);
        // The gateway has declared the topology once it is ready.
        api.wait_readyz(200, READY_TIMEOUT, &[&gateway]).await;
        let token = api.user("python-joins").await;

        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let script = manifest.join("tests/python/consume_one.py");
        let schema = manifest.join("../../schemas/processing-event.schema.json");
        let mut consumer = Proc::spawn(
            "consume_one.py",
            Command::new(&python)
                .arg(&script)
                .arg(&env.vhost.url)
                .arg(&schema)
                .arg("30")
                .env("PYTHONUNBUFFERED", "1"),
        );
        consumer.wait_line("READY", START_TIMEOUT).await;
        env.progress("the Python consumer is bound");

        let accepted = api.submit_game(&token, ten_second_game(3)).await;
        env.progress(format!("game accepted, event {}", accepted.event_id));
        let status = consumer.wait_exit(Duration::from_secs(40)).await;
        let stderr = consumer.stderr();
        let status = status.unwrap_or_else(|| {
            panic!(
                "the Python consumer still runs after 40 s; stdout: {:?}\nstderr:\n{stderr}",
                consumer.stdout
            )
        });
        assert!(
            status.success(),
            "the Python consumer: {status}; stdout: {:?}\nstderr:\n{stderr}",
            consumer.stdout
        );
        let want = format!("EVENT_ID {}", accepted.event_id);
        assert!(
            consumer.stdout.iter().any(|l| l == &want),
            "the Python consumer did not print {want:?}: {:?}\nstderr:\n{stderr}",
            consumer.stdout
        );
        env.progress(format!(
            "the Python consumer validated event {}",
            accepted.event_id
        ));
    });
    env.progress("done (the whole test, set-up included)");
}

#[test]
fn a_processor_serves_its_metrics_and_health() {
    let Some(env) = TestEnv::begin("a_processor_serves_its_metrics_and_health") else {
        return;
    };
    runtime().block_on(async {
        let (gateway, base) = start_gateway(&env, "gateway").await;
        let mut cmd = m2m("processor", &env);
        cmd.args(["--metrics-listen", "127.0.0.1:0"]);
        let mut processor = Proc::spawn("processor", &mut cmd);
        const SERVING: &str = "m2m processor serving /metrics, /healthz and /readyz on http://";
        let line = processor.wait_line(SERVING, START_TIMEOUT).await;
        let addr: std::net::SocketAddr = line[SERVING.len()..]
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
        assert_ne!(addr.port(), 0, "{line}");
        processor
            .wait_line("m2m processor consuming with concurrency ", START_TIMEOUT)
            .await;
        env.progress(format!("processor operations endpoint on {addr}"));
        let ops = Api::new(&format!("http://{addr}"));
        let procs = [&gateway, &processor];

        let health = ops
            .client
            .get(ops.url("/healthz"))
            .send()
            .await
            .expect("GET /healthz");
        assert_eq!(health.status(), 200);
        assert_eq!(health.text().await.expect("a body"), "ok");
        ops.wait_readyz(200, READY_TIMEOUT, &procs).await;

        // A processed game shows in the processor's own metrics.
        let api = Api::new(&base);
        api.wait_readyz(200, READY_TIMEOUT, &procs).await;
        let token = api.user("processor-metrics").await;
        let accepted = api.submit_game(&token, ten_second_game(1)).await;
        api.assert_all_processed_once(&token, &[accepted.game_id], &procs)
            .await;
        let text = ops.metrics().await;
        assert!(
            text.lines().any(|l| l == "m2m_games_processed_total 1"),
            "m2m_games_processed_total is not 1:\n{text}"
        );
        for name in ["m2m_games_failed_total 0", "m2m_processing_seconds_count 1"] {
            assert!(
                text.lines().any(|l| l.starts_with(name)),
                "{name} missing:\n{text}"
            );
        }
        // The gateway's metrics are the gateway's.
        assert!(!text.contains("m2m_http_requests"), "{text}");

        // Once the process is told to stop, it stops, endpoint included.
        processor.terminate();
        let status = processor.wait_exit(Duration::from_secs(30)).await;
        let status = status
            .unwrap_or_else(|| panic!("still running after SIGTERM\n{}", logs(&[&processor])));
        assert!(
            status.success(),
            "exit after SIGTERM: {status}\n{}",
            logs(&[&processor])
        );
        assert_eq!(ops.readyz().await, None, "the endpoint is closed");
    });
    env.progress("done (the whole test, set-up included)");
}

// ---------------------------------------------------------------------------
// Reprocessing (docs/data-lifecycle.md)
// ---------------------------------------------------------------------------

/// `m2m reprocess --all` against the deployment's database stores its
/// events in the outbox; the gateway publishes them to RabbitMQ like
/// uploads, and two processors of the later release (algorithm version 2,
/// played through `M2M_TEST_ALGORITHM_VERSION`) share the work.
#[test]
fn two_processors_share_the_reprocessing() {
    const GAMES: u64 = 12;
    let Some(env) = TestEnv::begin("two_processors_share_the_reprocessing") else {
        return;
    };
    runtime().block_on(async {
        let (gateway, base) = start_gateway(&env, "gateway").await;
        let mut first = start_processor(&env, "processor-v1", &[]).await;
        let api = Arc::new(Api::new(&base));
        api.wait_readyz(200, READY_TIMEOUT, &[&gateway, &first])
            .await;
        let token = api.user("reprocessed-patient").await;
        let accepted = api.submit_many(&token, 0..GAMES).await;
        api.wait_processed(&token, &accepted, &[&gateway, &first])
            .await;
        first.terminate();
        first.wait_exit(Duration::from_secs(20)).await;
        drop(first);
        env.progress(format!("{GAMES} games processed under version 1"));

        let later = |name: &'static str| {
            let mut cmd = m2m("processor", &env);
            cmd.args(["--concurrency", "1"])
                .env("M2M_TEST_ALGORITHM_VERSION", "2");
            Proc::spawn(name, &mut cmd)
        };
        let (mut p1, mut p2) = (later("processor-1"), later("processor-2"));
        for p in [&mut p1, &mut p2] {
            p.wait_line("m2m processor consuming with concurrency ", START_TIMEOUT)
                .await;
        }

        let mut cmd = m2m_command(env!("CARGO_BIN_EXE_m2m"));
        cmd.args(["reprocess", "--all", "--database-url", &env.database_url()])
            .env("M2M_TEST_ALGORITHM_VERSION", "2");
        let mut command = Proc::spawn("m2m reprocess", &mut cmd);
        let status = command.wait_exit(PROCESS_TIMEOUT).await;
        let procs = [&gateway, &p1, &p2, &command];
        assert!(
            status.is_some_and(|s| s.success()),
            "m2m reprocess: {status:?}\n{}",
            logs(&procs)
        );
        assert_eq!(
            command.stdout,
            [
                format!("reprocessing {GAMES} games under algorithm version 2"),
                format!("{GAMES} games reprocessed under algorithm version 2"),
            ],
            "{}",
            logs(&procs)
        );
        env.progress("m2m reprocess done");

        // Each processor did some of it, and no game was done twice.
        let done = |p: &Proc| p.stderr().matches("game processed").count();
        let (d1, d2) = (done(&p1), done(&p2));
        env.progress(format!("processor-1 did {d1}, processor-2 did {d2}"));
        assert!(
            d1 > 0 && d2 > 0,
            "one processor did it all\n{}",
            logs(&procs)
        );
        let feed = api.feed(&token).await;
        for id in &accepted {
            let changes: Vec<&Value> = feed
                .iter()
                .filter(|c| c["game_id"] == id.as_str())
                .collect();
            assert_eq!(changes.len(), 2, "game {id}: {feed:#?}");
            assert_eq!(changes[0]["algorithm_version"], 1);
            assert_eq!(changes[1]["type"], "game.reprocessed");
            assert_eq!(changes[1]["algorithm_version"], 2);
            assert_eq!(api.game(&token, id).await["algorithm_version"], 2);
        }
        assert_eq!(d1 + d2, GAMES as usize, "{}", logs(&procs));
    });
    env.progress("done (the whole test, set-up included)");
}

/// The same on MongoDB, when `M2M_TEST_MONGODB_URL` names a server: a
/// gateway and a processor on a fresh database (dropped after), the
/// processor restarted as the later release, and `m2m reprocess --all`
/// pointed at the database; run again, it finds nothing to do.
#[cfg(feature = "mongodb")]
#[test]
fn reprocessing_a_mongodb_deployment_is_done_once() {
    const GAMES: u64 = 3;
    let Some(base) = std::env::var("M2M_TEST_MONGODB_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    else {
        println!("not run: M2M_TEST_MONGODB_URL is not set");
        return;
    };
    let Some(mut env) = TestEnv::begin("reprocessing_a_mongodb_deployment_is_done_once") else {
        return;
    };
    // The database in the URL's path (a URL with a path or options of its
    // own is not supported here).
    let database = format!("m2m_test_reprocess_{}", uuid::Uuid::now_v7().simple());
    env.database_url = format!("{}/{database}", base.trim_end_matches('/'));
    let _drop = DropDatabase {
        url: base.clone(),
        database,
    };
    env.progress(format!("database {}", env.database_url));
    runtime().block_on(async {
        let (gateway, base) = start_gateway(&env, "gateway").await;
        let mut first = start_processor(&env, "processor-v1", &[]).await;
        let api = Arc::new(Api::new(&base));
        api.wait_readyz(200, READY_TIMEOUT, &[&gateway, &first])
            .await;
        let token = api.user("mongo-reprocessed").await;
        let accepted = api.submit_many(&token, 0..GAMES).await;
        api.wait_processed(&token, &accepted, &[&gateway, &first])
            .await;
        for id in &accepted {
            assert_eq!(api.game(&token, id).await["algorithm_version"], 1);
        }
        first.terminate();
        first.wait_exit(Duration::from_secs(20)).await;
        drop(first);
        env.progress(format!("{GAMES} games processed under version 1"));

        let mut cmd = m2m("processor", &env);
        cmd.env("M2M_TEST_ALGORITHM_VERSION", "2");
        let mut later = Proc::spawn("processor-v2", &mut cmd);
        later
            .wait_line("m2m processor consuming with concurrency ", START_TIMEOUT)
            .await;

        let run = |name: &'static str| {
            let mut cmd = m2m_command(env!("CARGO_BIN_EXE_m2m"));
            cmd.args(["reprocess", "--all", "--database-url", &env.database_url()])
                .env("M2M_TEST_ALGORITHM_VERSION", "2");
            Proc::spawn(name, &mut cmd)
        };
        let mut command = run("m2m reprocess");
        let status = command.wait_exit(PROCESS_TIMEOUT).await;
        let procs = [&gateway, &later, &command];
        assert!(
            status.is_some_and(|s| s.success()),
            "m2m reprocess: {status:?}\n{}",
            logs(&procs)
        );
        assert_eq!(
            command.stdout,
            [
                format!("reprocessing {GAMES} games under algorithm version 2"),
                format!("{GAMES} games reprocessed under algorithm version 2"),
            ],
            "{}",
            logs(&procs)
        );
        env.progress("m2m reprocess done");

        let feed = api.feed(&token).await;
        for id in &accepted {
            let changes: Vec<&Value> = feed
                .iter()
                .filter(|c| c["game_id"] == id.as_str())
                .collect();
            assert_eq!(changes.len(), 2, "game {id}: {feed:#?}");
            assert_eq!(changes[0]["type"], "game.processed", "{feed:#?}");
            assert_eq!(changes[0]["algorithm_version"], 1, "{feed:#?}");
            assert_eq!(changes[1]["type"], "game.reprocessed", "{feed:#?}");
            assert_eq!(changes[1]["algorithm_version"], 2, "{feed:#?}");
            assert_eq!(changes[1]["status"], "processed", "{feed:#?}");
            let game = api.game(&token, id).await;
            assert_eq!(game["algorithm_version"], 2, "{game}");
            assert_eq!(game["status"], "processed", "{game}");
        }
        assert_eq!(
            later.stderr().matches("game processed").count(),
            GAMES as usize,
            "{}",
            logs(&procs)
        );

        // Again: nothing left below version 2, nothing done.
        let mut again = run("m2m reprocess (again)");
        let status = again.wait_exit(PROCESS_TIMEOUT).await;
        let procs = [&gateway, &later, &again];
        assert!(
            status.is_some_and(|s| s.success()),
            "m2m reprocess (again): {status:?}\n{}",
            logs(&procs)
        );
        assert_eq!(
            again.stdout,
            [
                "reprocessing 0 games under algorithm version 2",
                "0 games reprocessed under algorithm version 2",
            ],
            "{}",
            logs(&procs)
        );
        let feed_after = api.feed(&token).await;
        assert_eq!(feed_after.len(), feed.len(), "{feed_after:#?}");
    });
    env.progress("done (the whole test, set-up included)");
}
