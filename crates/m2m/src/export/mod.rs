//! `m2m export`: the research tables, `games` and `samples`, as Parquet
//! or CSV, from the store of `m2m serve` (`--data-dir`) or of a deployment
//! (`--database-url`). The design is docs/data-lifecycle.md ("Export for
//! research"); the tables' columns are in docs/export.md.
//!
//! Two passes over the games' metadata (a page at a time, through
//! [`m2m_store::Export`]): the first finds the columns (the union of the
//! games' channels and metrics) and the last game to export; the second
//! reads each game's samples ([`m2m_store::Games::game_samples`]) and
//! writes its rows before reading the next, so memory does not grow with
//! the number of games. A game that changed between the passes (a channel
//! or metric the first pass did not see, its samples gone) is left out with
//! a warning, and so is one whose samples cannot be read; games stored
//! after the first pass are not exported.

mod csv_table;
mod files;
mod parquet_table;
mod pseudonym;
mod tables;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use csv_table::CsvTable;
use files::Staged;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use m2m_app::StoreSource;
use m2m_domain::GameSamples;
use m2m_store::{ExportFilter, ExportedGame, Store, StoreError};
use parquet_table::{ParquetTable, GAMES_PER_GROUP, SAMPLES_PER_GROUP};
use pseudonym::{KeySource, PseudonymKey};
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tables::{Schema, SchemaBuilder, Value};
use uuid::Uuid;

/// Games read from the store at a time.
const PAGE: u32 = 256;

/// Options of `m2m export`.
#[derive(Debug, clap::Args)]
pub(crate) struct ExportArgs {
    /// The directory to write the two tables into (made if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The tables' format: `parquet` (games.parquet, samples.parquet) or
    /// `csv` (games.csv, samples.csv).
    #[arg(long, value_enum, default_value_t = Format::Parquet)]
    format: Format,
    /// Only games started at or after this time: a date (2026-11-01,
    /// midnight UTC) or an RFC 3339 date-time (2026-11-01T08:00:00+01:00).
    #[arg(long, value_name = "DATE", value_parser = parse_time)]
    since: Option<DateTime<Utc>>,
    /// Only games started before this time (exclusive: `--since 2026-11-01
    /// --until 2026-12-01` is November), in the same forms as --since.
    #[arg(long, value_name = "DATE", value_parser = parse_time)]
    until: Option<DateTime<Utc>>,
    /// Only the games of these users (user ids; the option may be
    /// repeated or take several ids).
    #[arg(long = "user", value_name = "ID", num_args = 1.., action = clap::ArgAction::Append)]
    users: Vec<Uuid>,
    /// The key of the pseudonyms (at least 32 characters, used as its
    /// bytes; prefer the environment: a command line is visible to every
    /// user). Without it, the key kept in the data directory's
    /// `export-key` (made on first use); required with --database-url.
    #[arg(long, env = "M2M_PSEUDONYM_KEY", hide_env_values = true)]
    pseudonym_key: Option<KeyText>,
    /// Add a `username` column to `games`. Usernames are never exported
    /// without it.
    #[arg(long)]
    with_usernames: bool,
    /// Replace table files that exist in --out (without it, the export
    /// stops before it starts).
    #[arg(long)]
    force: bool,
    /// The data directory of `m2m serve` (its SQLite file `m2m.db`), used
    /// when no database URL is given.
    #[arg(long, env = "M2M_DATA_DIR", default_value = "./m2m-data")]
    data_dir: PathBuf,
    /// The database of a deployment: sqlite:///absolute/path.db or
    /// mongodb://host:27017/m2m. Takes precedence over --data-dir.
    #[arg(long, env = "M2M_DATABASE_URL")]
    database_url: Option<String>,
}

/// The tables' file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Parquet,
    Csv,
}

impl Format {
    fn extension(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Csv => "csv",
        }
    }
}

/// The key as given. `Debug` does not print it, and clap never sees a
/// reason to refuse it (its error would quote the value): the length is
/// checked by [`PseudonymKey::given`].
#[derive(Clone)]
struct KeyText(String);

impl std::str::FromStr for KeyText {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(KeyText(s.to_owned()))
    }
}

impl std::fmt::Debug for KeyText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyText(<redacted>)")
    }
}

/// `--since` and `--until`: a date (midnight UTC) or an RFC 3339 date-time.
fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .filter(|_| s.len() == 10)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            "expected a date (2026-11-01) or an RFC 3339 date-time (2026-11-01T08:00:00Z)"
                .to_owned()
        })
}

/// Why the export did not complete.
enum Failure {
    /// Not as asked (exit status 2): the message says why.
    Refused(String),
    /// The store or the system failed (exit status 1).
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Failed(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Failed(anyhow::Error::new(e).context("cannot read the store"))
    }
}

/// What an export did.
#[derive(Debug, Default)]
struct Summary {
    files: Vec<PathBuf>,
    games: u64,
    samples: u64,
    /// Games left out because they changed during the export.
    changed: u64,
    /// Games left out because their samples cannot be read.
    unreadable: u64,
    key: Option<KeySource>,
}

/// Runs `m2m export`: exit status 0 when the tables are written, 2 when
/// the export cannot be made as asked (nothing written), 1 when the store
/// or a write fails (nothing left under the tables' names).
pub(crate) fn run(args: ExportArgs) -> ExitCode {
    if let Err(e) = crate::telemetry::init() {
        let _ = writeln!(std::io::stderr(), "m2m export: {}", crate::report(&e));
        return ExitCode::FAILURE;
    }
    let (code, line) = match export(args) {
        Ok(summary) => {
            print_summary(&summary);
            return ExitCode::SUCCESS;
        }
        Err(Failure::Refused(why)) => (ExitCode::from(2), why),
        Err(Failure::Failed(e)) => (ExitCode::FAILURE, crate::report(&e)),
    };
    let _ = writeln!(std::io::stderr(), "m2m export: {line}");
    code
}

fn print_summary(s: &Summary) {
    let files: Vec<String> = s.files.iter().map(|p| p.display().to_string()).collect();
    let key = match &s.key {
        Some(KeySource::Given) => "the key given".to_owned(),
        Some(KeySource::Kept(path)) => format!("the key in {}", path.display()),
        Some(KeySource::Made(path)) => format!("a new key, kept in {}", path.display()),
        None => "no key".to_owned(),
    };
    // Not `println!`, which panics when stdout is a closed pipe.
    let _ = writeln!(
        std::io::stdout(),
        "exported {} games ({} samples) to {}; users pseudonymised with {key}",
        s.games,
        s.samples,
        files.join(" and "),
    );
    if s.changed + s.unreadable > 0 {
        let _ = writeln!(
            std::io::stderr(),
            "m2m export: left out {} games that changed during the export (export again to \
             have them) and {} whose samples cannot be read; the warnings above name them",
            s.changed,
            s.unreadable
        );
    }
}

fn export(args: ExportArgs) -> Result<Summary, Failure> {
    if let (Some(since), Some(until)) = (args.since, args.until) {
        if since >= until {
            return Err(Failure::Refused(format!(
                "--since ({since}) must be before --until ({until})"
            )));
        }
    }
    let (source, key, key_source) = match (&args.database_url, &args.pseudonym_key) {
        (Some(url), given) => {
            let Some(KeyText(text)) = given else {
                return Err(Failure::Refused(
                    "with --database-url, give the key of the pseudonyms: --pseudonym-key \
                     or M2M_PSEUDONYM_KEY (at least 32 characters; the same key gives the \
                     same pseudonyms in every export)"
                        .to_owned(),
                ));
            };
            let key = PseudonymKey::given(text).map_err(Failure::Refused)?;
            (StoreSource::Url(url.clone()), key, KeySource::Given)
        }
        (None, given) => {
            let db = args.data_dir.join("m2m.db");
            if !db.is_file() {
                return Err(Failure::Refused(format!(
                    "no database in {} (m2m.db): give the data directory of m2m serve with \
                     --data-dir, or a database with --database-url",
                    args.data_dir.display()
                )));
            }
            let (key, key_source) = match given {
                Some(KeyText(text)) => (
                    PseudonymKey::given(text).map_err(Failure::Refused)?,
                    KeySource::Given,
                ),
                None => PseudonymKey::kept_in(&args.data_dir)?,
            };
            (StoreSource::Sqlite(db), key, key_source)
        }
    };

    let ext = args.format.extension();
    let names = [format!("games.{ext}"), format!("samples.{ext}")];
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let existing = files::existing(&args.out, &names);
    if !existing.is_empty() && !args.force {
        let existing: Vec<String> = existing.iter().map(|p| p.display().to_string()).collect();
        return Err(Failure::Refused(format!(
            "{} exists already: give --force to replace it, or another --out",
            existing.join(" and ")
        )));
    }

    let filter = ExportFilter {
        started_from: args.since,
        started_before: args.until,
        users: args.users.clone(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut summary = runtime.block_on(async {
        let store = m2m_app::open_store(source)
            .await
            .context("cannot open the store")?;
        let export = Run {
            store: &*store,
            filter,
            key,
            with_usernames: args.with_usernames,
        };
        export.run(&args.out, &names, args.format, args.force).await
    })?;
    summary.key = Some(key_source);
    Ok(summary)
}

/// One export under way.
struct Run<'a> {
    store: &'a dyn Store,
    filter: ExportFilter,
    key: PseudonymKey,
    with_usernames: bool,
}

/// The two tables, in either format (boxed: the writers are large, and
/// the two formats' of different sizes).
enum Tables {
    Parquet {
        games: Box<ParquetTable>,
        samples: Box<ParquetTable>,
    },
    Csv {
        games: Box<CsvTable>,
        samples: Box<CsvTable>,
    },
}

impl Tables {
    fn new(format: Format, schema: &Schema, staged: &[Staged]) -> anyhow::Result<Tables> {
        let (games, samples) = (staged[0].file()?, staged[1].file()?);
        Ok(match format {
            Format::Parquet => Tables::Parquet {
                games: Box::new(ParquetTable::new(
                    games,
                    "games",
                    &schema.game_columns(),
                    GAMES_PER_GROUP,
                )?),
                samples: Box::new(ParquetTable::new(
                    samples,
                    "samples",
                    &schema.sample_columns(),
                    SAMPLES_PER_GROUP,
                )?),
            },
            Format::Csv => Tables::Csv {
                games: Box::new(CsvTable::new(games, &schema.game_columns())?),
                samples: Box::new(CsvTable::new(samples, &schema.sample_columns())?),
            },
        })
    }

    fn push(
        &mut self,
        row: &[Value],
        game_id: &str,
        samples: &GameSamples,
        channels: &[String],
    ) -> anyhow::Result<()> {
        match self {
            Tables::Parquet {
                games,
                samples: table,
            } => {
                games.push_row(row)?;
                table.push_samples(game_id, samples, channels)
            }
            Tables::Csv {
                games,
                samples: table,
            } => {
                games.push_row(row)?;
                table.push_samples(game_id, samples, channels)
            }
        }
    }

    fn finish(self) -> anyhow::Result<()> {
        match self {
            Tables::Parquet { games, samples } => {
                games.finish()?;
                samples.finish()
            }
            Tables::Csv { games, samples } => {
                games.finish()?;
                samples.finish()
            }
        }
    }
}

impl Run<'_> {
    async fn run(
        &self,
        out: &std::path::Path,
        names: &[String; 2],
        format: Format,
        replace: bool,
    ) -> Result<Summary, Failure> {
        // First pass: the columns, the number of games and the last one.
        let mut builder = SchemaBuilder::default();
        let mut total = 0u64;
        let mut last = None;
        loop {
            let page = self.store.export_games(&self.filter, last, PAGE).await?;
            for game in &page {
                builder.add(game);
            }
            total += page.len() as u64;
            let full = page.len() == PAGE as usize;
            last = page.last().map(|g| g.game.game_id).or(last);
            if !full {
                break;
            }
        }
        let schema = builder.build(self.with_usernames);

        // Second pass: each game's rows, written before the next is read.
        let staged = vec![Staged::new(out, &names[0])?, Staged::new(out, &names[1])?];
        let mut tables = Tables::new(format, &schema, &staged)?;
        let progress = progress_bar(total);
        let mut summary = Summary::default();
        let mut usernames: HashMap<Uuid, Option<String>> = HashMap::new();
        let mut after = None;
        'pages: while let Some(end) = last {
            let page = self.store.export_games(&self.filter, after, PAGE).await?;
            let Some(tail) = page.last() else { break };
            after = Some(tail.game.game_id);
            for game in page {
                if game.game.game_id > end {
                    break 'pages;
                }
                self.write_game(&game, &schema, &mut tables, &mut usernames, &mut summary)
                    .await?;
                progress.inc(1);
            }
        }
        progress.finish_and_clear();
        tables.finish()?;
        summary.files = files::commit(staged, replace)?;
        Ok(summary)
    }

    /// Writes one game's rows to both tables, or leaves it out (with a
    /// warning) when it no longer fits the schema or its samples cannot
    /// be read.
    async fn write_game(
        &self,
        game: &ExportedGame,
        schema: &Schema,
        tables: &mut Tables,
        usernames: &mut HashMap<Uuid, Option<String>>,
        summary: &mut Summary,
    ) -> Result<(), Failure> {
        let game_id = game.game.game_id;
        let samples = match self.store.game_samples(game.user_id, game_id).await {
            Ok(Some(samples)) => samples,
            Ok(None) => {
                tracing::warn!(%game_id, "left out: the game was deleted during the export");
                summary.changed += 1;
                return Ok(());
            }
            Err(e @ StoreError::Corrupt { .. }) => {
                tracing::warn!(%game_id, error = %e, "left out: its samples cannot be read");
                summary.unreadable += 1;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let username = if self.with_usernames {
            match usernames.get(&game.user_id) {
                Some(name) => name.clone(),
                None => {
                    let name = self.store.profile(game.user_id).await?.map(|p| p.username);
                    usernames.insert(game.user_id, name.clone());
                    name
                }
            }
        } else {
            None
        };
        let fits = samples
            .channels
            .names()
            .all(|name| schema.channels.iter().any(|c| c == name));
        let row = schema.game_row(game, &self.key, username).filter(|_| fits);
        let Some(row) = row else {
            tracing::warn!(
                %game_id,
                "left out: it gained a channel or a metric during the export"
            );
            summary.changed += 1;
            return Ok(());
        };
        let id = game_id.hyphenated().to_string();
        tables.push(&row, &id, &samples, &schema.channels)?;
        summary.games += 1;
        summary.samples += samples.channels.samples() as u64;
        Ok(())
    }
}

/// A bar on stderr when it is a terminal, else a hidden one.
fn progress_bar(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} games")
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_midnight_utc_and_date_times_keep_their_offset() {
        assert_eq!(
            parse_time("2026-11-01").unwrap(),
            DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").unwrap()
        );
        assert_eq!(
            parse_time("2026-11-01T08:00:00+01:00").unwrap(),
            DateTime::parse_from_rfc3339("2026-11-01T07:00:00Z").unwrap()
        );
        for bad in [
            "2026-11-31",
            "2026-1-1",
            "yesterday",
            "2026-11-01T08:00",
            "",
        ] {
            let err = parse_time(bad).unwrap_err();
            assert!(err.contains("expected a date"), "{bad}: {err}");
        }
    }
}
