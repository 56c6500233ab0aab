//! `m2m analyze` as a user runs it: the real binary, real files, stdin.

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
