//! Passwords, access tokens, refresh tokens and the failed-login limiter.

use crate::password::{contract_params, Hasher};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use m2m_domain::Role;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OnceCell, Semaphore};
use tokio::time::Instant;
use uuid::Uuid;

/// The secret that signs access tokens. Never printed.
#[derive(Clone)]
pub struct JwtSecret(Arc<Vec<u8>>);

impl JwtSecret {
    pub fn new(bytes: Vec<u8>) -> Self {
        JwtSecret(Arc::new(bytes))
    }

    /// A new random secret (256 bits), hex-encoded for keeping in a file.
    pub fn generate_hex() -> String {
        let mut b = [0u8; 32];
        rand::rng().fill_bytes(&mut b);
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}

impl fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtSecret(<redacted>)")
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    /// The account's role when the token was issued. Tokens issued before
    /// accounts had roles have none: those are patients.
    #[serde(default)]
    role: Role,
    iat: i64,
    exp: i64,
}

/// Limits of the failed-login limiter.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    pub per_username: usize,
    pub per_address: usize,
    pub window: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            per_username: 10,
            per_address: 100,
            window: Duration::from_secs(60),
        }
    }
}

/// Usernames and addresses the failed-login limiter tracks at most (a few
/// MB at most).
const MAX_LIMITER_KEYS: usize = 50_000;

/// How many argon2 computations may run at once on a machine with `cores`
/// cores: all but one, so that logins never take every core from uploads
/// and their analysis (one on a single-core machine).
fn hashers(cores: usize) -> usize {
    cores.saturating_sub(1).max(1)
}

/// Everything about credentials and tokens.
pub(crate) struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    pub(crate) access_ttl: Duration,
    pub(crate) refresh_ttl: Duration,
    /// Bounds the argon2 computations running at once: each takes ~19 MiB
    /// and a core for tens of milliseconds, on the blocking pool, so a burst
    /// of logins queues here instead of starving everything else.
    hashing: Semaphore,
    hasher: Arc<Hasher>,
    /// A hash of a random password, verified against for unknown users so
    /// that both kinds of failed login take the same time.
    dummy_hash: OnceCell<String>,
    limiter: Limiter,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("access_ttl", &self.access_ttl)
            .finish_non_exhaustive()
    }
}

impl Auth {
    pub(crate) fn new(
        secret: &JwtSecret,
        access_ttl: Duration,
        refresh_ttl: Duration,
        limits: LoginLimits,
    ) -> Self {
        let hashers = hashers(std::thread::available_parallelism().map_or(2, |n| n.get()));
        Auth {
            encoding: EncodingKey::from_secret(&secret.0),
            decoding: DecodingKey::from_secret(&secret.0),
            access_ttl,
            refresh_ttl,
            hashing: Semaphore::new(hashers),
            hasher: Arc::new(Hasher::new(contract_params())),
            dummy_hash: OnceCell::new(),
            limiter: Limiter::new(limits),
        }
    }

    /// Hashes a password (argon2id, random salt) off the async runtime.
    pub(crate) async fn hash_password(&self, password: String) -> anyhow::Result<String> {
        let _permit = self.hashing.acquire().await?;
        let hasher = self.hasher.clone();
        tokio::task::spawn_blocking(move || hasher.hash_random_salt(password.as_bytes())).await?
    }

    /// Checks a password against a stored hash, or against the dummy hash
    /// when there is no account, off the async runtime.
    pub(crate) async fn verify_password(
        &self,
        password: String,
        hash: Option<String>,
    ) -> anyhow::Result<bool> {
        let known = hash.is_some();
        let hash = match hash {
            Some(h) => h,
            None => self.dummy_hash().await?,
        };
        let _permit = self.hashing.acquire().await?;
        let hasher = self.hasher.clone();
        let ok =
            tokio::task::spawn_blocking(move || hasher.verify(password.as_bytes(), &hash)).await?;
        Ok(ok && known)
    }

    async fn dummy_hash(&self) -> anyhow::Result<String> {
        self.dummy_hash
            .get_or_try_init(|| self.hash_password(JwtSecret::generate_hex()))
            .await
            .cloned()
    }

    /// A signed access token for `user_id`, stating its `role`.
    pub(crate) fn access_token(
        &self,
        user_id: Uuid,
        role: Role,
        now: DateTime<Utc>,
    ) -> anyhow::Result<String> {
        let claims = Claims {
            sub: user_id,
            role,
            iat: now.timestamp(),
            exp: now.timestamp() + self.access_ttl.as_secs() as i64,
        };
        Ok(jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &self.encoding,
        )?)
    }

    /// The user of a valid, unexpired access token, and the role it states.
    pub(crate) fn verify_access_token(&self, token: &str) -> Option<(Uuid, Role)> {
        let mut validation = Validation::default();
        validation.leeway = 0;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .ok()
            .map(|d| (d.claims.sub, d.claims.role))
    }

    /// A new refresh token (256 random bits) and the hash that is stored.
    pub(crate) fn new_refresh_token() -> (String, [u8; 32]) {
        let mut b = [0u8; 32];
        rand::rng().fill_bytes(&mut b);
        let token = URL_SAFE_NO_PAD.encode(b);
        let hash = Self::hash_token(&token);
        (token, hash)
    }

    /// SHA-256 of a presented refresh token (a 256-bit random value needs
    /// no slow hash: it cannot be guessed).
    pub(crate) fn hash_token(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    pub(crate) fn limiter(&self) -> &Limiter {
        &self.limiter
    }
}

/// Failed logins in a sliding window, per username and per client address.
/// In memory: each gateway limits what it sees. Bounded: keys are at most
/// 64 characters (longer usernames are refused before they get here), each
/// keeps at most its limit of instants, and at most `max_keys` keys are
/// kept, the stalest evicted first.
pub(crate) struct Limiter {
    limits: LoginLimits,
    max_keys: usize,
    /// A std Mutex: held for a few map operations, never across an await.
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Limiter {
    fn new(limits: LoginLimits) -> Self {
        Limiter {
            limits,
            max_keys: MAX_LIMITER_KEYS,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn keys(username_key: &str, address: Option<std::net::IpAddr>) -> [(String, usize); 2] {
        let addr = address.map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        [(format!("u:{username_key}"), 0), (format!("a:{addr}"), 1)]
    }

    /// `Some(seconds)` to wait if either limit is reached.
    pub(crate) fn check(
        &self,
        username_key: &str,
        address: Option<std::net::IpAddr>,
    ) -> Option<u64> {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait: Option<Duration> = None;
        for (key, which) in Self::keys(username_key, address) {
            let limit = if which == 0 {
                self.limits.per_username
            } else {
                self.limits.per_address
            };
            if let Some(q) = map.get_mut(&key) {
                while q
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.limits.window)
                {
                    q.pop_front();
                }
                if q.len() >= limit {
                    let oldest = *q.front().expect("non-empty at the limit");
                    let w = self.limits.window - now.duration_since(oldest);
                    wait = Some(wait.map_or(w, |x| x.max(w)));
                }
            }
        }
        wait.map(|w| w.as_secs_f64().ceil().max(1.0) as u64)
    }

    /// Records a failed login.
    pub(crate) fn record_failure(&self, username_key: &str, address: Option<std::net::IpAddr>) {
        let now = Instant::now();
        let window = self.limits.window;
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for (key, which) in Self::keys(username_key, address) {
            let limit = if which == 0 {
                self.limits.per_username
            } else {
                self.limits.per_address
            };
            if !map.contains_key(&key) && map.len() >= self.max_keys {
                make_room(&mut map, self.max_keys, now, window);
            }
            let q = map.entry(key).or_default();
            while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
                q.pop_front();
            }
            q.push_back(now);
            // Past the limit only the newest failures matter.
            while q.len() > limit.max(1) {
                q.pop_front();
            }
        }
    }

    /// Names and addresses currently tracked.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

/// Makes room for one more key in a map of `max_keys`: drops every key
/// whose failures are all older than the window, and if that frees nothing,
/// the key whose latest failure is the oldest. Under a flood of distinct
/// names this is a scan per failed login, small next to the argon2
/// verification each failed login costs.
fn make_room(
    map: &mut HashMap<String, VecDeque<Instant>>,
    max_keys: usize,
    now: Instant,
    window: Duration,
) {
    map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
    if map.len() < max_keys {
        return;
    }
    let oldest = map
        .iter()
        .min_by_key(|(_, q)| q.back().copied())
        .map(|(k, _)| k.clone());
    if let Some(k) = oldest {
        map.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(
            &JwtSecret::new(b"test secret".to_vec()),
            Duration::from_secs(900),
            Duration::from_secs(3600),
            LoginLimits::default(),
        )
    }

    #[test]
    fn access_tokens_state_the_role() {
        let auth = auth();
        let user = Uuid::now_v7();
        for role in Role::ALL {
            let token = auth.access_token(user, role, Utc::now()).unwrap();
            assert_eq!(auth.verify_access_token(&token), Some((user, role)));
        }
    }

    /// Tokens issued before accounts had roles carry no `role`: patients.
    #[test]
    fn a_token_without_a_role_is_a_patients() {
        #[derive(Serialize)]
        struct OldClaims {
            sub: Uuid,
            iat: i64,
            exp: i64,
        }
        let auth = auth();
        let user = Uuid::now_v7();
        let now = Utc::now().timestamp();
        let token = jsonwebtoken::encode(
            &Header::default(),
            &OldClaims {
                sub: user,
                iat: now,
                exp: now + 900,
            },
            &auth.encoding,
        )
        .unwrap();
        assert_eq!(
            auth.verify_access_token(&token),
            Some((user, Role::Patient))
        );
    }

    #[test]
    fn the_limiter_keeps_at_most_max_keys() {
        let mut limiter = Limiter::new(LoginLimits::default());
        limiter.max_keys = 100;
        for i in 0..1000 {
            limiter.record_failure(&format!("name{i}"), None);
        }
        assert!(limiter.tracked() <= 100, "{}", limiter.tracked());
        // The newest names are still limited.
        for _ in 0..10 {
            limiter.record_failure("name999", None);
        }
        assert!(limiter.check("name999", None).is_some());
    }

    #[test]
    fn the_limiter_keeps_at_most_its_limit_of_failures_per_key() {
        let limiter = Limiter::new(LoginLimits::default());
        for _ in 0..1000 {
            limiter.record_failure("ada", None);
        }
        let map = limiter.failures.lock().unwrap();
        assert_eq!(map["u:ada"].len(), 10);
        assert_eq!(map["a:unknown"].len(), 100);
    }

    #[test]
    fn logins_leave_a_core_to_uploads() {
        assert_eq!(hashers(1), 1);
        assert_eq!(hashers(2), 1);
        assert_eq!(hashers(8), 7);
    }
}
