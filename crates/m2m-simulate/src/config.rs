//! The command line (`SimulateArgs`) and the validated run description
//! (`SimulateConfig`) that the library takes.

use crate::SimulateError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Options of `m2m simulate`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Base URL of the m2m API (without `/v1`), e.g. http://127.0.0.1:8080.
    #[arg(long, env = "M2M_SIMULATE_BASE_URL")]
    pub base_url: String,
    /// Simulated users (phones): each registers, logs in, listens on its
    /// event stream and submits games.
    #[arg(long, default_value_t = 10)]
    pub users: usize,

    /// Length of each generated game, in seconds (how long the patient
    /// plays; not how long the simulator runs, see --run-for).
    #[arg(long, alias = "duration-s", default_value_t = 60.0)]
    pub game_seconds: f64,
    /// Sample rate of each generated game.
    #[arg(long, default_value_t = 100.0)]
    pub sample_rate_hz: f64,
    /// Sensor channel groups to include.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "flex,force,gyro"
    )]
    pub channels: Vec<Channel>,
    /// Add a tremor of this frequency to the gyro.
    #[arg(long)]
    pub tremor_hz: Option<f64>,
    /// Standard deviation of the sensor noise (0 for none).
    #[arg(long, default_value_t = 0.3)]
    pub noise: f64,
    /// Seed of the game pool: the same seed gives the same games (random
    /// when omitted; the report shows the one used).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Distinct games generated before the clock starts and cycled through.
    #[arg(long, default_value_t = 64)]
    pub distinct_games: usize,

    /// Open loop: submit this many games per second, whatever the server's
    /// answers take.
    #[arg(long, conflicts_with = "concurrency")]
    pub rate: Option<f64>,
    /// Closed loop: keep this many submissions in flight (default 8 when
    /// neither --rate nor --concurrency is given).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Stop after submitting this many games (default 100 when neither
    /// --games nor --run-for is given; with both, whichever comes first).
    #[arg(long)]
    pub games: Option<u64>,
    /// Stop submitting after this long (the length of the whole run, not of
    /// each game): `90`, `90s`, `500ms`, `5m`, `1h`.
    #[arg(long, alias = "duration", value_parser = parse_duration)]
    pub run_for: Option<Duration>,
    /// After the last submission, wait at most this long for the
    /// notifications of the accepted games.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub drain_timeout: Duration,
    /// Time limit of each HTTP request (not of the event streams).
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub request_timeout: Duration,

    /// Send the bodies gzip-compressed (`Content-Encoding: gzip`).
    #[arg(long)]
    pub gzip: bool,
    /// Encoding of the games: JSON, or CBOR with the columns as float32
    /// typed arrays (RFC 8746), as a phone on a metered link would send
    /// them.
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
    /// Print the report as one JSON object on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A group of sensor channels of the generated games.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Channel {
    /// `flex_thumb` … `flex_pinky`
    Flex,
    /// `force_thumb` … `force_pinky`
    Force,
    /// `gyro_x`, `gyro_y`, `gyro_z`
    Gyro,
    /// `accel_x`, `accel_y`, `accel_z`
    Accel,
}

/// How the generated games are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `application/json`, three decimals a sample (the glove's
    /// resolution).
    Json,
    /// `application/cbor`, each column an RFC 8746 typed array of
    /// little-endian float32 (tag 85): 4 bytes a sample, nothing for the
    /// server to parse number by number. float32 rather than plain CBOR
    /// arrays of floats (5 or 9 bytes a sample): about seven significant
    /// digits, more than the glove's three decimals need.
    Cbor,
}

impl Format {
    /// The name in the report (`json`, `cbor`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Cbor => "cbor",
        }
    }

    /// The `Content-Type` of the bodies.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Cbor => "application/cbor",
        }
    }
}

/// What each generated game looks like (the seed is given separately).
#[derive(Debug, Clone, PartialEq)]
pub struct GameOptions {
    /// Length of each game, in seconds.
    pub game_seconds: f64,
    pub sample_rate_hz: f64,
    pub channels: Vec<Channel>,
    pub tremor_hz: Option<f64>,
    pub noise: f64,
}

/// How submissions are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// Open loop: games per second, sent on schedule whatever the answers.
    Rate(f64),
    /// Closed loop: this many requests in flight at all times.
    Concurrency(usize),
}

/// A validated run of the simulator.
#[derive(Debug, Clone)]
pub struct SimulateConfig {
    pub base_url: reqwest::Url,
    pub users: usize,
    pub game: GameOptions,
    pub seed: u64,
    pub distinct_games: usize,
    pub load: Load,
    /// Stop after this many submissions…
    pub games: Option<u64>,
    /// …or after submitting for this long, whichever comes first (at
    /// least one is set).
    pub run_for: Option<Duration>,
    pub drain_timeout: Duration,
    pub request_timeout: Duration,
    pub gzip: bool,
    pub format: Format,
    /// Draw a progress bar on stderr (only if stderr is a terminal).
    pub progress: bool,
    /// Makes this run's usernames unique (`sim-<run_id>-<i>`).
    pub run_id: String,
}

impl SimulateConfig {
    /// A small run against `base_url` with the defaults of the command line
    /// and a fixed seed; tests and callers adjust the fields they need.
    pub fn new(base_url: reqwest::Url) -> Self {
        SimulateConfig {
            base_url,
            users: 10,
            game: GameOptions {
                game_seconds: 60.0,
                sample_rate_hz: 100.0,
                channels: vec![Channel::Flex, Channel::Force, Channel::Gyro],
                tremor_hz: None,
                noise: 0.3,
            },
            seed: 1,
            distinct_games: 64,
            load: Load::Concurrency(8),
            games: Some(100),
            run_for: None,
            drain_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            gzip: false,
            format: Format::Json,
            progress: false,
            run_id: new_run_id(),
        }
    }

    /// Checks the values that clap cannot (ranges, at least one bound).
    pub(crate) fn validate(&self) -> Result<(), SimulateError> {
        let bad = |m: &str| Err(SimulateError::Config(m.to_owned()));
        if !matches!(self.base_url.scheme(), "http") {
            return bad("--base-url must be an http:// URL (TLS is not built in)");
        }
        if self.users == 0 {
            return bad("--users must be at least 1");
        }
        if self.distinct_games == 0 {
            return bad("--distinct-games must be at least 1");
        }
        if self.game.channels.is_empty() {
            return bad("--channels needs at least one group");
        }
        if !(self.game.game_seconds > 0.0 && self.game.game_seconds.is_finite()) {
            return bad("--game-seconds must be a positive number");
        }
        if !(10.0..=1000.0).contains(&self.game.sample_rate_hz) {
            return bad("--sample-rate-hz must be within 10 and 1000 (the API's range)");
        }
        if self.game.game_seconds * self.game.sample_rate_hz > 600_000.0 {
            return bad("--game-seconds × --sample-rate-hz exceeds the API's 600 000 samples");
        }
        if !(self.game.noise >= 0.0 && self.game.noise.is_finite()) {
            return bad("--noise must be a non-negative number");
        }
        if let Some(f) = self.game.tremor_hz {
            if !(f > 0.0 && f.is_finite()) {
                return bad("--tremor-hz must be a positive number");
            }
        }
        match self.load {
            Load::Rate(r) if !(r > 0.0 && r.is_finite()) => {
                return bad("--rate must be a positive number");
            }
            Load::Concurrency(0) => return bad("--concurrency must be at least 1"),
            _ => {}
        }
        if self.games.is_none() && self.run_for.is_none() {
            return bad("give --games or --run-for");
        }
        Ok(())
    }
}

impl TryFrom<SimulateArgs> for SimulateConfig {
    type Error = SimulateError;

    fn try_from(a: SimulateArgs) -> Result<Self, SimulateError> {
        let base_url = reqwest::Url::parse(&a.base_url).map_err(|e| {
            SimulateError::Config(format!("--base-url {:?} is not a URL: {e}", a.base_url))
        })?;
        let load = match (a.rate, a.concurrency) {
            (Some(r), _) => Load::Rate(r),
            (None, Some(c)) => Load::Concurrency(c),
            (None, None) => Load::Concurrency(8),
        };
        let games = match (a.games, a.run_for) {
            (None, None) => Some(100),
            (g, _) => g,
        };
        let mut channels = a.channels;
        channels.dedup();
        let config = SimulateConfig {
            base_url,
            users: a.users,
            game: GameOptions {
                game_seconds: a.game_seconds,
                sample_rate_hz: a.sample_rate_hz,
                channels,
                tremor_hz: a.tremor_hz,
                noise: a.noise,
            },
            seed: a.seed.unwrap_or_else(random_seed),
            distinct_games: a.distinct_games,
            load,
            games,
            run_for: a.run_for,
            drain_timeout: a.drain_timeout,
            request_timeout: a.request_timeout,
            gzip: a.gzip,
            format: a.format,
            progress: true,
            run_id: new_run_id(),
        };
        config.validate()?;
        Ok(config)
    }
}

/// Parses `250ms`, `30s`, `5m`, `1h` or a bare number of seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 500ms, 30s, 5m, 1h)"))?;
    if !(v >= 0.0 && v.is_finite()) {
        return Err(format!("{s:?} is not a non-negative duration"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

/// Nanoseconds of the clock mixed with the process id: different for each
/// run, and no dependency on a random number generator for it.
fn entropy() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    splitmix64(nanos ^ (u64::from(std::process::id()) << 32))
}

fn random_seed() -> u64 {
    entropy() % 1_000_000_000
}

/// Eight hex digits, new for each run.
pub(crate) fn new_run_id() -> String {
    format!("{:08x}", entropy() as u32)
}

/// A well-mixing step (from SplitMix64), used to derive one seed per
/// distinct game from the run's seed.
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }

    fn parse(extra: &[&str]) -> Result<SimulateConfig, String> {
        let mut argv = vec!["m2m", "--base-url", "http://127.0.0.1:1"];
        argv.extend_from_slice(extra);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        SimulateConfig::try_from(cli.args).map_err(|e| e.to_string())
    }

    #[test]
    fn durations() {
        for (s, d) in [
            ("250ms", Duration::from_millis(250)),
            ("30s", Duration::from_secs(30)),
            ("30", Duration::from_secs(30)),
            ("1.5m", Duration::from_secs(90)),
            ("1h", Duration::from_secs(3600)),
        ] {
            assert_eq!(parse_duration(s), Ok(d), "{s}");
        }
        for s in ["", "abc", "-1s", "1d"] {
            assert!(parse_duration(s).is_err(), "{s}");
        }
    }

    #[test]
    fn defaults_and_modes() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.load, Load::Concurrency(8));
        assert_eq!(c.games, Some(100));
        assert_eq!(c.users, 10);
        assert_eq!(
            c.game.channels,
            [Channel::Flex, Channel::Force, Channel::Gyro]
        );
        let c = parse(&["--rate", "5", "--run-for", "10s", "--seed", "7"]).unwrap();
        assert_eq!(c.load, Load::Rate(5.0));
        assert_eq!((c.games, c.run_for), (None, Some(Duration::from_secs(10))));
        assert_eq!(c.seed, 7);
        let c = parse(&["--channels", "flex,accel"]).unwrap();
        assert_eq!(c.game.channels, [Channel::Flex, Channel::Accel]);
    }

    #[test]
    fn run_length_and_game_length_are_distinct_flags() {
        let c = parse(&["--run-for", "2m", "--game-seconds", "30"]).unwrap();
        assert_eq!(c.run_for, Some(Duration::from_secs(120)));
        assert_eq!(c.game.game_seconds, 30.0);
        assert_eq!(c.games, None, "--run-for alone bounds the run");
        // The old names still work, meaning the same as before.
        let old = parse(&["--duration", "2m", "--duration-s", "30"]).unwrap();
        assert_eq!(old.run_for, c.run_for);
        assert_eq!(old.game.game_seconds, c.game.game_seconds);
        assert_eq!(old.games, None);
        // Each defaults on its own.
        let c = parse(&["--run-for", "5s"]).unwrap();
        assert_eq!(c.game.game_seconds, 60.0);
        let c = parse(&["--game-seconds", "5"]).unwrap();
        assert_eq!((c.games, c.run_for), (Some(100), None));
        // Help shows only the unambiguous names.
        let help = <Cli as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        for shown in ["--run-for", "--game-seconds"] {
            assert!(help.contains(shown), "{shown} missing from:\n{help}");
        }
        for hidden in ["--duration ", "--duration-s"] {
            assert!(!help.contains(hidden), "{hidden} shown in:\n{help}");
        }
    }

    #[test]
    fn invalid_values_are_named() {
        for (args, needle) in [
            (&["--rate", "1", "--concurrency", "2"][..], "--concurrency"),
            (&["--rate", "0"][..], "--rate"),
            (&["--concurrency", "0"][..], "--concurrency"),
            (&["--users", "0"][..], "--users"),
            (&["--sample-rate-hz", "5"][..], "--sample-rate-hz"),
            (&["--channels", "flex,nose"][..], "nose"),
            (&["--run-for", "soon"][..], "soon"),
            (&["--game-seconds", "0"][..], "--game-seconds"),
            (
                &["--game-seconds", "700", "--sample-rate-hz", "1000"][..],
                "--game-seconds",
            ),
        ] {
            let e = parse(args).unwrap_err();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
        let cli = Cli::try_parse_from(["m2m", "--base-url", "https://x.example"]).unwrap();
        let e = SimulateConfig::try_from(cli.args).unwrap_err().to_string();
        assert!(e.contains("http://"), "{e}");
    }
}
