//! Traits and plain data shared by every pgline layer.
//!
//! `pgline-core` does no IO: it names tokio-postgres's data types (`Row`,
//! `ToSql`, `Error`, `SqlState`) in its signatures, but it opens no connection,
//! spawns no task and depends on no runtime, HTTP, figment or OpenTelemetry.
