//! `m2m users add`: accounts an operator creates, such as therapists', in
//! the same store as the services use.

use anyhow::Context;
use m2m_app::StoreSource;
use m2m_domain::{Password, Role, Username};
use m2m_store::{NewUser, StoreError};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use uuid::Uuid;

/// The variable the password is read from.
const PASSWORD_VAR: &str = "M2M_PASSWORD";

/// Options of `m2m users`.
#[derive(Debug, clap::Args)]
pub(crate) struct UsersArgs {
    #[command(subcommand)]
    command: UsersCommand,
}

#[derive(Debug, clap::Subcommand)]
enum UsersCommand {
    /// Create an account and print its user id.
    ///
    /// The password is read from M2M_PASSWORD or, when that is unset and
    /// standard input is a terminal, prompted for (twice, without echo).
    /// Username and password follow the rules of registration. Exit status
    /// 0 on success, 2 when the account cannot be created as asked (the
    /// username is taken, a rule is broken, no password was given), 1 when
    /// the database fails.
    Add(AddArgs),
}

#[derive(Debug, clap::Args)]
struct AddArgs {
    /// The account's role: `therapist`, or `patient` (what registration
    /// creates).
    #[arg(long, value_parser = parse_role)]
    role: Role,
    /// The username: 3–64 ASCII letters, digits, '.', '_' or '-'.
    #[arg(long)]
    username: String,
    /// The data directory of `m2m serve` (its SQLite file `m2m.db`), used
    /// when no database URL is given.
    #[arg(long, env = "M2M_DATA_DIR", default_value = "./m2m-data")]
    data_dir: PathBuf,
    /// The database of a scaled-out deployment: sqlite:///absolute/path.db
    /// or mongodb://host:27017/m2m. Takes precedence over --data-dir.
    #[arg(long, env = "M2M_DATABASE_URL")]
    database_url: Option<String>,
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).map_err(|e| e.to_string())
}

/// Why no account was created.
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

pub(crate) fn run(args: UsersArgs) -> ExitCode {
    let UsersCommand::Add(args) = args.command;
    let (code, line) = match add(args) {
        Ok(user_id) => {
            // Not `println!`, which panics when stdout is a closed pipe.
            let _ = writeln!(std::io::stdout(), "{user_id}");
            return ExitCode::SUCCESS;
        }
        Err(Failure::Refused(why)) => (ExitCode::from(2), why),
        Err(Failure::Failed(e)) => (ExitCode::FAILURE, crate::report(&e)),
    };
    let _ = writeln!(std::io::stderr(), "m2m users add: {line}");
    code
}

fn add(args: AddArgs) -> Result<Uuid, Failure> {
    // The username first, so that a bad one is refused before the prompt.
    let username = Username::parse(&args.username).map_err(|e| Failure::Refused(e.to_string()))?;
    let password =
        Password::parse(read_password(&username)?).map_err(|e| Failure::Refused(e.to_string()))?;
    let password_hash = m2m_gateway::hash_password(&password)?;
    let source = match args.database_url {
        Some(url) => StoreSource::Url(url),
        None => {
            std::fs::create_dir_all(&args.data_dir).with_context(|| {
                format!(
                    "cannot create the data directory {}",
                    args.data_dir.display()
                )
            })?;
            StoreSource::Sqlite(args.data_dir.join("m2m.db"))
        }
    };
    let user = NewUser {
        user_id: Uuid::now_v7(),
        username,
        password_hash,
        role: args.role,
        created_at: chrono::Utc::now(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let store = m2m_app::open_store(source)
            .await
            .context("cannot open the store")?;
        let user_id = user.user_id;
        let name = user.username.as_str().to_owned();
        match store.create_user(user).await {
            Ok(()) => Ok(user_id),
            Err(StoreError::Conflict(_)) => {
                Err(Failure::Refused(format!("the username {name:?} is taken")))
            }
            Err(e) => Err(Failure::Failed(
                anyhow::Error::new(e).context("cannot create the account"),
            )),
        }
    })
}

/// The password from [`PASSWORD_VAR`], or prompted for on a terminal.
fn read_password(username: &Username) -> Result<String, Failure> {
    if let Some(p) = std::env::var_os(PASSWORD_VAR) {
        return p
            .into_string()
            .map_err(|_| Failure::Refused(format!("{PASSWORD_VAR} is not valid UTF-8")));
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::Refused(format!(
            "no password: set {PASSWORD_VAR}, or run on a terminal to be prompted for it"
        )));
    }
    let first = rpassword::prompt_password(format!("Password for {}: ", username.as_str()))
        .context("cannot read the password")?;
    let again = rpassword::prompt_password("The same password again: ")
        .context("cannot read the password")?;
    if first != again {
        return Err(Failure::Refused("the two passwords differ".into()));
    }
    Ok(first)
}
