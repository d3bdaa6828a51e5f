//! Integration tests of the sync pool against throwaway PostgreSQL servers.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod adapter;
mod clean_state;
mod common;
mod lifecycle;
mod threads;
mod tls;
