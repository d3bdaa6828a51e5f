//! Integration tests for pgline-testkit: one test binary, one module per topic.
//!
//! Every test starts real PostgreSQL servers from the binaries on this machine; none is
//! skipped when PostgreSQL is missing (they fail with the install message instead).

mod basic;
mod cleanup;
mod databases;
mod discovery;
mod lifecycle;
mod proxy;
mod shared;
mod standby;
mod support;
