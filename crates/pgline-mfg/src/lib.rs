//! The manufacturing domain of pgline: schema and migrations, repositories for
//! orders, panels and barcode events, and order processing.
//!
//! Written once against the `pgline-core` traits, so it runs unchanged on the
//! async and the sync backend.
