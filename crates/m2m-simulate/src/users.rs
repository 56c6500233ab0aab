//! Simulated users: registration, login and keeping the access token
//! fresh for runs longer than its 15 minutes.

use crate::SimulateError;
use futures::{stream, StreamExt, TryStreamExt};
use reqwest::header::HeaderValue;
use reqwest::{Client, StatusCode, Url};
use serde::Deserialize;
use serde_json::json;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Registrations and logins in flight at once: the server hashes each
/// password with argon2, which is deliberately slow.
const AUTH_PARALLELISM: usize = 4;

/// One simulated phone's account.
#[derive(Debug)]
pub(crate) struct User {
    pub(crate) username: String,
    /// `Bearer <access token>`, ready to attach. A std `RwLock`: it is held
    /// only to clone the value (a reference count), never across an await.
    auth: RwLock<HeaderValue>,
}

impl User {
    /// The `Authorization` header value of the current access token.
    pub(crate) fn auth(&self) -> HeaderValue {
        self.auth.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_token(&self, access_token: &str) {
        if let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {access_token}")) {
            v.set_sensitive(true);
            *self.auth.write().unwrap_or_else(|p| p.into_inner()) = v;
        }
    }
}

/// A logged-in user and what its refresher needs.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) user: Arc<User>,
    refresh_token: String,
    expires_in: u64,
}

#[derive(Deserialize)]
struct Tokens {
    access_token: String,
    refresh_token: String,
    expires_in: u64,
}

/// Checks that the server answers at all, so that an unreachable server is
/// reported as such and not as a failed registration.
pub(crate) async fn check_reachable(
    client: &Client,
    base: &Url,
    timeout: Duration,
) -> Result<(), SimulateError> {
    let url = base.join("healthz").expect("a relative path joins");
    client
        .get(url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|source| SimulateError::Unreachable {
            url: base.to_string(),
            source,
        })?;
    Ok(())
}

/// Registers and logs in `n` users named `sim-<run_id>-<i>`.
pub(crate) async fn sign_up(
    client: &Client,
    base: &Url,
    run_id: &str,
    n: usize,
    timeout: Duration,
) -> Result<Vec<Session>, SimulateError> {
    let password = format!("sim-password-{run_id}");
    stream::iter(0..n)
        .map(|i| {
            let username = format!("sim-{run_id}-{i}");
            let password = password.as_str();
            async move {
                register(client, base, &username, password, timeout).await?;
                login(client, base, username, password, timeout).await
            }
        })
        .buffered(AUTH_PARALLELISM)
        .try_collect()
        .await
}

/// POSTs a username and password to `path` (registration or login).
async fn post_credentials(
    client: &Client,
    base: &Url,
    path: &str,
    username: &str,
    password: &str,
    timeout: Duration,
) -> Result<reqwest::Response, SimulateError> {
    client
        .post(base.join(path).expect("a relative path joins"))
        .timeout(timeout)
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .map_err(|source| SimulateError::Unreachable {
            url: base.to_string(),
            source,
        })
}

async fn register(
    client: &Client,
    base: &Url,
    username: &str,
    password: &str,
    timeout: Duration,
) -> Result<(), SimulateError> {
    let r = post_credentials(client, base, "v1/users", username, password, timeout).await?;
    if r.status() != StatusCode::CREATED {
        return Err(SimulateError::Register {
            username: username.to_owned(),
            status: r.status(),
            body: r.text().await.unwrap_or_default(),
        });
    }
    Ok(())
}

async fn login(
    client: &Client,
    base: &Url,
    username: String,
    password: &str,
    timeout: Duration,
) -> Result<Session, SimulateError> {
    let r = post_credentials(client, base, "v1/login", &username, password, timeout).await?;
    let status = r.status();
    let failed = |body: String| SimulateError::Login {
        username: username.clone(),
        status,
        body,
    };
    if status != StatusCode::OK {
        return Err(failed(r.text().await.unwrap_or_default()));
    }
    let t: Tokens = r
        .json()
        .await
        .map_err(|e| failed(format!("unexpected answer: {e}")))?;
    let user = User {
        username,
        auth: RwLock::new(HeaderValue::from_static("")),
    };
    user.set_token(&t.access_token);
    Ok(Session {
        user: Arc::new(user),
        refresh_token: t.refresh_token,
        expires_in: t.expires_in,
    })
}

/// Renews the session's access token at three quarters of its lifetime,
/// forever (the caller aborts the task at the end of the run). A failed
/// refresh is retried every few seconds; meanwhile submissions may get 401,
/// which the report counts.
pub(crate) async fn keep_fresh(client: Client, base: Url, mut session: Session) {
    let url = base
        .join("v1/token/refresh")
        .expect("a relative path joins");
    let mut wait = Duration::from_secs(session.expires_in.max(4) * 3 / 4);
    loop {
        tokio::time::sleep(wait).await;
        let answer = client
            .post(url.clone())
            .timeout(Duration::from_secs(30))
            .json(&json!({"refresh_token": session.refresh_token}))
            .send()
            .await;
        let tokens = match answer {
            Ok(r) if r.status() == StatusCode::OK => r.json::<Tokens>().await.ok(),
            _ => None,
        };
        match tokens {
            Some(t) => {
                session.user.set_token(&t.access_token);
                session.refresh_token = t.refresh_token;
                wait = Duration::from_secs(t.expires_in.max(4) * 3 / 4);
            }
            None => wait = Duration::from_secs(5),
        }
    }
}
