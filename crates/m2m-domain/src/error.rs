//! Validation errors that name the offending field.

use std::fmt;

/// One problem with one field, e.g. `channels.gyro_x[17]`: "not a finite number".
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// Dotted path of the field, with `[i]` for array elements.
    pub field: String,
    /// What is wrong with it, as a sentence fragment.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Why a submission was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmissionError {
    /// The body is not well-formed JSON (`from_json`) or CBOR (`from_cbor`)
    /// (HTTP 400). The caller knows which format it asked for and says so.
    #[error("malformed body: {0}")]
    Malformed(String),
    /// A well-formed document that breaks the contract (HTTP 422). Never
    /// empty.
    #[error("{}", summary(.0))]
    Invalid(Vec<FieldError>),
}

impl SubmissionError {
    /// A single field error.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        SubmissionError::Invalid(vec![FieldError::new(field, message)])
    }

    /// The field errors (empty for a malformed body).
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            SubmissionError::Malformed(_) => &[],
            SubmissionError::Invalid(errors) => errors,
        }
    }
}

fn summary(errors: &[FieldError]) -> String {
    match errors {
        [] => "invalid submission".to_owned(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
    }
}
