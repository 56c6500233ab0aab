//! The handlers, one module per resource.

pub(crate) mod accounts;
pub(crate) mod feed;
pub(crate) mod games;
pub(crate) mod ops;
