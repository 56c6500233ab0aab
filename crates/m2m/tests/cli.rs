//! The command line as a user runs it: `m2m analyze` on real files and stdin,
//! `m2m users add` (accounts an operator creates), and what every
//! long-lived role checks of its environment before it starts.

use m2m_synth::GameSpec;
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn m2m(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_m2m"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("m2m starts");
    let input = stdin.unwrap_or_default().to_vec();
    let mut pipe = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        // The process may exit before reading everything; that is fine.
        let _ = pipe.write_all(&input);
    });
    let out = child.wait_with_output().expect("m2m runs");
    writer.join().unwrap();
    out
}

fn stdout_json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

#[test]
fn analyzes_a_generated_game_from_a_file_and_from_stdin() {
    let spec = GameSpec {
        duration_s: 20.0,
        ..GameSpec::standard()
    };
    let json = spec.submission_json("pinch-garden", 321.0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("game.json");
    std::fs::write(&path, &json).unwrap();

    let from_file = m2m(&["analyze", path.to_str().unwrap()], None);
    assert!(
        from_file.status.success(),
        "{}",
        String::from_utf8_lossy(&from_file.stderr)
    );
    let v = stdout_json(&from_file);
    let m = &v["metrics"];
    assert_eq!(m["duration_s"], 20.0);
    assert_eq!(m["score"], 321.0);
    // 24 cycles a minute for 20 s.
    assert_eq!(m["repetitions"], 8);
    let tremor_hz = m["tremor"]["frequency_hz"].as_f64().unwrap();
    assert!((tremor_hz - 6.0).abs() < 0.4, "tremor at {tremor_hz} Hz");
    for key in ["rom_deg", "peak_force_n", "smoothness", "active_time_s"] {
        assert!(m.get(key).is_some(), "{key} missing in {m}");
    }

    let from_stdin = m2m(&["analyze", "-"], Some(json.as_bytes()));
    assert!(from_stdin.status.success());
    assert_eq!(stdout_json(&from_stdin), v);
}

#[test]
fn invalid_input_names_the_field_and_exits_2() {
    let body = br#"{"game":"g","score":1,"sample_rate_hz":100,"channels":{"gyro_x":[1,2,3],"flex_index":[1,2]}}"#;
    let out = m2m(&["analyze", "-"], Some(body));
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("channels.flex_index: has 2 samples, expected 3"),
        "{err}"
    );
}

#[test]
fn bad_json_and_unreadable_files_exit_2_with_a_message() {
    let out = m2m(&["analyze", "-"], Some(b"{\"game\": "));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid JSON"));

    let out = m2m(&["analyze", "/nonexistent/game.json"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read /nonexistent/game.json"), "{err}");
}

/// Runs `m2m ARGS` with `M2M_LOG_FORMAT=format` until it exits, or until
/// it has written `lines` lines to stderr or 20 s have passed (then it is
/// killed and the status is `None`); returns the status and the stderr.
fn with_log_format(
    args: &[&str],
    format: &str,
    lines: usize,
) -> (Option<std::process::ExitStatus>, String) {
    with_env(args, &[("M2M_LOG_FORMAT", format)], lines)
}

/// `m2m serve` on a free port and `data_dir`.
fn serve_args(data_dir: &str) -> [&str; 5] {
    ["serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir]
}

/// As [`with_log_format`], with any environment.
fn with_env(
    args: &[&str],
    env: &[(&str, &str)],
    lines: usize,
) -> (Option<std::process::ExitStatus>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_m2m"))
        .args(args)
        .envs(env.iter().copied())
        .env("M2M_JWT_SECRET", "log-format-test-secret-0123456789abcdef")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("m2m starts");
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(err)) {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut stderr: Vec<String> = Vec::new();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        stderr.extend(rx.try_iter());
        if stderr.len() >= lines || std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // The last lines of an exited process.
    std::thread::sleep(std::time::Duration::from_millis(100));
    stderr.extend(rx.try_iter());
    (status, stderr.join("\n"))
}

#[test]
fn every_service_refuses_an_unknown_log_format() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let db = format!("sqlite://{}", dir.path().join("scaled.db").display());
    // The broker is never reached: the refusal comes first.
    let amqp = "amqp://guest:guest@127.0.0.1:1/%2f";
    let serve = serve_args(data_dir.to_str().unwrap());
    let gateway = [
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--amqp-url",
        amqp,
        "--database-url",
        &db,
    ];
    let processor = ["processor", "--amqp-url", amqp, "--database-url", &db];
    for args in [&serve[..], &gateway[..], &processor[..]] {
        let (status, stderr) = with_log_format(args, "yaml", usize::MAX);
        let status = status.unwrap_or_else(|| {
            panic!(
                "m2m {} still running 20 s with M2M_LOG_FORMAT=yaml:\n{stderr}",
                args[0]
            )
        });
        assert_eq!(
            status.code(),
            Some(1),
            "m2m {}: {status}\n{stderr}",
            args[0]
        );
        assert!(
            stderr.contains("M2M_LOG_FORMAT=yaml")
                && stderr.contains("accepted values: text, json"),
            "m2m {}: {stderr}",
            args[0]
        );
    }
    assert!(
        !data_dir.exists(),
        "the refused server created its data directory"
    );

    // The accepted values are taken: JSON lines with `json`.
    let (status, stderr) = with_log_format(&serve, "json", 1);
    assert!(
        status.is_none(),
        "m2m serve with json exited: {status:?}\n{stderr}"
    );
    let first = stderr.lines().next().unwrap_or_default();
    let line: serde_json::Value = serde_json::from_str(first)
        .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {first:?}"));
    assert!(line["fields"]["message"].is_string(), "{line}");
}

#[test]
fn a_log_filter_that_cannot_be_parsed_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let serve = serve_args(data_dir.to_str().unwrap());
    let (status, stderr) = with_env(&serve, &[("M2M_LOG", "m2m=loud")], usize::MAX);
    let status =
        status.unwrap_or_else(|| panic!("still running 20 s with M2M_LOG=m2m=loud:\n{stderr}"));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("M2M_LOG=m2m=loud"), "{stderr}");
    assert!(
        !data_dir.exists(),
        "the refused server created its data directory"
    );
}

/// `m2m users add` with `args`, the password (if any) in M2M_PASSWORD and
/// stdin not a terminal.
fn users_add(args: &[&str], password: Option<&str>) -> Output {
    let mut cmd = m2m_testkit::m2m_command(env!("CARGO_BIN_EXE_m2m"));
    cmd.args(["users", "add"]).args(args).stdin(Stdio::null());
    if let Some(password) = password {
        cmd.env("M2M_PASSWORD", password);
    }
    cmd.output().expect("m2m runs")
}

/// An operator creates a therapist's account in the data directory of
/// `m2m serve`; the therapist logs in like a patient, the access token says
/// `therapist`, and uploading a game is refused with 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_creates_a_therapist_who_cannot_upload() {
    use m2m_testkit::{assert_problem, small_game, token_claims, Api, Proc, PASSWORD};
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let data_dir = data_dir.to_str().unwrap();

    let out = users_add(
        &[
            "--role",
            "therapist",
            "--username",
            "Ther",
            "--data-dir",
            data_dir,
        ],
        Some(PASSWORD),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let user_id: uuid::Uuid = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .expect("the new user id on stdout");

    // The same name again, in any case: exit status 2 and a message.
    let again = users_add(
        &[
            "--role",
            "patient",
            "--username",
            "ther",
            "--data-dir",
            data_dir,
        ],
        Some(PASSWORD),
    );
    assert_eq!(again.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("\"ther\" is taken"), "{stderr}");
    assert!(again.stdout.is_empty());

    let mut cmd = m2m_testkit::m2m_command(env!("CARGO_BIN_EXE_m2m"));
    cmd.args(serve_args(data_dir));
    let mut server = Proc::spawn("m2m serve", &mut cmd);
    let line = server
        .wait_line("m2m serving on http://", m2m_testkit::START_TIMEOUT)
        .await;
    let addr = line["m2m serving on ".len()..]
        .split_once(' ')
        .expect("an address")
        .0;
    let api = Api::new(addr);

    let token = api.access_token("ther").await;
    let claims = token_claims(&token);
    assert_eq!(claims["role"], "therapist", "{claims}");
    assert_eq!(claims["sub"], user_id.to_string(), "{claims}");
    let problem = assert_problem(api.post_game(&token, small_game(1)).await, 403, None).await;
    assert_eq!(problem["type"], "urn:m2m:problem:forbidden", "{problem}");

    // A patient registered through the API still uploads.
    let patient = api.user("ada").await;
    assert_eq!(token_claims(&patient)["role"], "patient");
    assert_eq!(api.post_game(&patient, small_game(2)).await.status(), 202);

    server.terminate();
    assert!(server
        .wait_exit(std::time::Duration::from_secs(20))
        .await
        .is_some_and(|s| s.success()));
}

#[test]
fn users_add_refuses_what_registration_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let add = |username: &str, role: &str, password: Option<&str>| {
        users_add(
            &[
                "--role",
                role,
                "--username",
                username,
                "--data-dir",
                data_dir,
            ],
            password,
        )
    };

    // No M2M_PASSWORD and stdin is not a terminal: nothing to prompt on.
    let out = add("grace", "therapist", None);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no password: set M2M_PASSWORD, or run on a terminal"),
        "{stderr}"
    );

    let out = add("grace", "therapist", Some("short"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("password"));

    let out = add("no spaces", "therapist", Some("a long enough password"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("username"));

    // An unknown role is a usage error (clap's status 2).
    let out = add("grace", "admin", Some("a long enough password"));
    assert_eq!(out.status.code(), Some(2));

    // None of these created the account.
    let out = add("grace", "patient", Some("a long enough password"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
