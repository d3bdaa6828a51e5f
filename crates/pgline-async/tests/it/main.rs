//! Integration tests of the async pool against throwaway PostgreSQL servers.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod clean_state;
mod common;
mod database;
mod lifecycle;
mod shared;
mod tls;
mod waiters;
