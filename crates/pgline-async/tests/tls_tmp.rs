//! Temporary harness for tests/it/tls.rs until tests/it/main.rs declares it.

#[path = "it/tls.rs"]
mod tls;
