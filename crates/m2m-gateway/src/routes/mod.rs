//! The handlers, one module per resource.

pub(crate) mod accounts;
pub(crate) mod care;
pub(crate) mod care_feed;
pub(crate) mod feed;
pub(crate) mod games;
pub(crate) mod me;
pub(crate) mod me_export;
pub(crate) mod ops;
pub(crate) mod patients;
