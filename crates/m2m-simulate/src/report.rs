//! The outcome of a run: as JSON (`--json`) or as a table for people.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// What a run did and measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Makes the run's usernames unique: `sim-<run_id>-<i>`.
    pub run_id: String,
    pub base_url: String,
    /// `concurrency` (closed loop) or `rate` (open loop).
    pub mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// Target games per second of the open loop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    pub users: usize,
    /// The seed of the game pool: passing it again gives the same games.
    pub seed: u64,
    pub distinct_games: usize,
    pub gzip: bool,
    /// How the games were encoded: `json` or `cbor` (float32 typed arrays).
    pub format: &'static str,
    /// Mean body size as sent (compressed with gzip) and before compression.
    pub body_bytes_mean: f64,
    pub body_bytes_raw_mean: f64,

    /// Requests sent (accepted + errored).
    pub submitted: u64,
    /// Answered 202.
    pub accepted: u64,
    /// Accepted games announced as `game.processed` on the event stream.
    pub processed: u64,
    /// Accepted games announced as `game.failed`.
    pub failed: u64,
    /// Requests not answered 202 (any status, timeout, connection error).
    pub errored: u64,
    /// `errored` by kind: `HTTP 503`, `timeout`, `connect`, `transport`.
    pub errors: BTreeMap<String, u64>,
    /// Accepted games whose notification had not arrived when the drain
    /// ended.
    pub unnotified: u64,
    /// Whether the drain gave up (`--drain-timeout`) with games unnotified.
    pub drain_timed_out: bool,

    /// Request start → 202 answer.
    pub submit_latency_ms: Latency,
    /// Request start → the game's event on the user's stream.
    pub notify_latency_ms: Latency,

    /// Clock start → end of the drain.
    pub elapsed_s: f64,
    /// Clock start → the last submission answered.
    pub submit_elapsed_s: f64,
    /// Accepted games per second of the submission phase.
    pub games_per_s: f64,
    /// Notified games (processed + failed) per second of the whole run.
    pub completed_per_s: f64,
    /// Request body bytes sent (as on the wire).
    pub bytes_sent: u64,
    /// Megabytes (10^6 bytes) of request bodies per second of the
    /// submission phase.
    pub mb_per_s: f64,

    pub simulator: SimulatorLoad,
}

/// Percentiles of a latency, in milliseconds; all zero with no sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    /// From a histogram of microseconds.
    pub(crate) fn from_micros(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Latency {
                count: 0,
                p50: 0.0,
                p95: 0.0,
                p99: 0.0,
                max: 0.0,
                mean: 0.0,
            };
        }
        Latency {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// How busy the simulator itself was: if `cpu_share` nears `cores`, the
/// simulator (not the server) may be the limit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SimulatorLoad {
    /// CPU seconds (user + system) this process used while the clock ran;
    /// absent where /proc is not available.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_s: Option<f64>,
    /// `cpu_s / elapsed_s`: 1.0 is one core fully busy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_share: Option<f64>,
    /// Cores available to the process.
    pub cores: usize,
    /// Time spent generating the game pool, before the clock started.
    pub pool_generation_s: f64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let load = match (self.concurrency, self.rate) {
            (Some(c), _) => format!("closed loop, concurrency {c}"),
            (_, Some(r)) => format!("open loop, {r} games/s"),
            _ => self.mode.to_owned(),
        };
        writeln!(
            f,
            "m2m simulate  run {}  against {}",
            self.run_id, self.base_url
        )?;
        writeln!(
            f,
            "  {load}; {} users; {} distinct games (seed {}) as {}, {:.0} KB each{}",
            self.users,
            self.distinct_games,
            self.seed,
            self.format.to_uppercase(),
            self.body_bytes_mean / 1000.0,
            if self.gzip {
                format!(" gzipped ({:.0} KB raw)", self.body_bytes_raw_mean / 1000.0)
            } else {
                String::new()
            }
        )?;
        writeln!(f)?;
        let kinds: Vec<String> = self
            .errors
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        let kinds = if kinds.is_empty() {
            String::new()
        } else {
            format!("  ({})", kinds.join(", "))
        };
        let drain = if self.drain_timed_out {
            "  (drain timed out)".to_owned()
        } else {
            String::new()
        };
        let counts = [
            ("games", "submitted", self.submitted, String::new()),
            ("", "accepted", self.accepted, String::new()),
            ("", "processed", self.processed, String::new()),
            ("", "failed", self.failed, String::new()),
            ("", "errored", self.errored, kinds),
            ("", "unnotified", self.unnotified, drain),
        ];
        // One format for every row, so the numbers line up whatever the
        // length of the label.
        for (group, label, n, note) in counts {
            writeln!(f, "  {group:<11}{label:<11}{n:>8}{note}")?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "  latency (ms)          {:>9} {:>9} {:>9} {:>9} {:>9}",
            "p50", "p95", "p99", "max", "mean"
        )?;
        for (name, l) in [
            ("submit → 202", &self.submit_latency_ms),
            ("submit → event", &self.notify_latency_ms),
        ] {
            writeln!(
                f,
                "  {name:<20}  {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                l.p50, l.p95, l.p99, l.max, l.mean
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "  throughput  {:.1} games/s accepted, {:.2} MB/s of bodies (over {:.2} s of submitting)",
            self.games_per_s, self.mb_per_s, self.submit_elapsed_s
        )?;
        writeln!(
            f,
            "              {:.1} MB of {} bodies sent",
            self.bytes_sent as f64 / 1e6,
            self.format.to_uppercase()
        )?;
        writeln!(
            f,
            "              {:.1} games/s notified (over {:.2} s in all)",
            self.completed_per_s, self.elapsed_s
        )?;
        let s = &self.simulator;
        match (s.cpu_s, s.cpu_share) {
            (Some(cpu), Some(share)) => writeln!(
                f,
                "  simulator   {cpu:.2} s CPU = {:.0}% of one core ({} cores); pool generated in {:.2} s",
                share * 100.0,
                s.cores,
                s.pool_generation_s
            ),
            _ => writeln!(
                f,
                "  simulator   CPU time not available; pool generated in {:.2} s",
                s.pool_generation_s
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latency() -> Latency {
        Latency {
            count: 3,
            p50: 1.0,
            p95: 2.0,
            p99: 3.0,
            max: 4.0,
            mean: 1.5,
        }
    }

    fn report(unnotified: u64, drain_timed_out: bool) -> Report {
        Report {
            run_id: "0badcafe".into(),
            base_url: "http://127.0.0.1:8080/".into(),
            mode: "concurrency",
            concurrency: Some(8),
            rate: None,
            users: 10,
            seed: 7,
            distinct_games: 64,
            gzip: false,
            format: "json",
            body_bytes_mean: 600_000.0,
            body_bytes_raw_mean: 600_000.0,
            submitted: 123_456,
            accepted: 123_450,
            processed: 123_440,
            failed: 7,
            errored: 6,
            errors: BTreeMap::from([("HTTP 503".to_owned(), 6)]),
            unnotified,
            drain_timed_out,
            submit_latency_ms: latency(),
            notify_latency_ms: latency(),
            elapsed_s: 10.0,
            submit_elapsed_s: 9.0,
            games_per_s: 12.0,
            completed_per_s: 11.0,
            bytes_sent: 1,
            mb_per_s: 7.0,
            simulator: SimulatorLoad {
                cpu_s: Some(1.0),
                cpu_share: Some(0.1),
                cores: 2,
                pool_generation_s: 0.5,
            },
        }
    }

    /// The column just after the count that follows `label` on its line.
    fn end_of_count(text: &str, label: &str) -> usize {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().any(|w| w == label))
            .unwrap_or_else(|| panic!("no {label} line in:\n{text}"));
        let after = line.find(label).unwrap() + label.len();
        let rest = &line[after..];
        let start = after + rest.find(|c: char| c.is_ascii_digit()).unwrap();
        start
            + line[start..]
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(line.len() - start)
    }

    #[test]
    fn the_counts_line_up() {
        for r in [report(3, false), report(12_345, true), report(0, false)] {
            let text = r.to_string();
            let labels = [
                "submitted",
                "accepted",
                "processed",
                "failed",
                "errored",
                "unnotified",
            ];
            let ends: Vec<usize> = labels.iter().map(|l| end_of_count(&text, l)).collect();
            assert!(ends.iter().all(|&e| e == ends[0]), "{ends:?} in:\n{text}");
            let starts: Vec<usize> = labels
                .iter()
                .map(|l| text.lines().find_map(|line| line.find(l)).unwrap())
                .collect();
            assert!(
                starts.iter().all(|&s| s == starts[0]),
                "{starts:?} in:\n{text}"
            );
            assert!(text.contains("(HTTP 503: 6)"), "{text}");
            assert_eq!(
                text.contains("(drain timed out)"),
                r.drain_timed_out,
                "{text}"
            );
        }
    }
}
