//! Black-box tests of the gateway: the real router with the real SQLite
//! store, in-process bus and processor, served on a random port and driven
//! over HTTP as a phone would. One test binary, one module per resource.

mod accounts;
mod feed;
mod games;
mod helpers;
mod hostile;
mod ops;
mod processing;
mod robust_reads;
