//! Black-box tests of the API: the whole system as `m2m serve` wires it
//! (m2m-app's `Application`: the gateway, the processor, the in-process bus
//! and the SQLite store), spawned by m2m-testkit in the test process on a
//! random port and driven over HTTP as a phone would. One test binary, one
//! module per resource.

mod accounts;
mod care;
mod cbor;
mod feed;
mod games;
mod hostile;
mod me_data;
mod ops;
mod patients;
mod processing;
mod reprocessing;
mod robust_reads;
mod web;
