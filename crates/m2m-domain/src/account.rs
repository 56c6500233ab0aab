//! Account credentials as the contract defines them.

use crate::error::FieldError;
use std::fmt;
use std::ops::RangeInclusive;

/// How many characters a username has.
pub const USERNAME_CHARS: RangeInclusive<usize> = 3..=64;
/// How many characters a password has.
pub const PASSWORD_CHARS: RangeInclusive<usize> = 10..=256;

/// A username: 3–64 ASCII letters, digits, `.`, `_`, `-`. Compared without
/// regard to case; the spelling the user chose is kept for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username {
    display: String,
    key: String,
}

impl Username {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if !USERNAME_CHARS.contains(&s.len()) || !s.chars().all(ok_char) {
            return Err(FieldError::new(
                "username",
                "must be 3–64 characters of ASCII letters, digits, '.', '_' or '-'",
            ));
        }
        Ok(Username {
            display: s.to_owned(),
            key: s.to_ascii_lowercase(),
        })
    }

    /// As the user spelled it.
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The lower-cased form that identifies the account.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// A password: 10–256 characters. Never printed, not even by `Debug`.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn parse(s: String) -> Result<Self, FieldError> {
        if !PASSWORD_CHARS.contains(&s.chars().count()) {
            return Err(FieldError::new("password", "must be 10–256 characters"));
        }
        Ok(Password(s))
    }

    /// The secret itself, for hashing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// What an account may do. `Patient` is the default and the only role
/// self-registration creates; an operator creates `Therapist` accounts
/// (`m2m users add`). A therapist does not upload games.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    Patient,
    Therapist,
}

impl Role {
    /// Every role, in the order of the contract.
    pub const ALL: [Role; 2] = [Role::Patient, Role::Therapist];

    /// The role's name, as stored and as tokens state it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Therapist => "therapist",
        }
    }

    /// The role named `s` (exactly as [`Role::as_str`] spells it).
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| FieldError::new("role", "must be 'patient' or 'therapist'"))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        let u = Username::parse("Ada.Lovelace_1-x").unwrap();
        assert_eq!(u.key(), "ada.lovelace_1-x");
        assert_eq!(u.as_str(), "Ada.Lovelace_1-x");
        for bad in [
            "ab",
            "",
            "has space",
            "émile",
            &"a".repeat(65),
            "semi;colon",
        ] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Username::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn roles() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()).unwrap(), r);
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
        assert_eq!(Role::default(), Role::Patient);
        assert!(Role::parse("Therapist").is_err());
        assert!(Role::parse("admin").is_err());
    }

    #[test]
    fn passwords() {
        assert!(Password::parse("123456789".into()).is_err());
        assert!(Password::parse("1234567890".into()).is_ok());
        assert!(Password::parse("é".repeat(256)).is_ok());
        assert!(Password::parse("x".repeat(257)).is_err());
        assert_eq!(
            format!("{:?}", Password::parse("secret-password".into()).unwrap()),
            "Password(<redacted>)"
        );
    }
}
