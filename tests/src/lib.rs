//! End-to-end support across the pgline crates.
//!
//! The fault scenarios of [`chaos`] live here as a library so that
//! `cargo xtask chaos` (the full suite, binary `pgline-chaos`) and the test
//! suite (a fast subset in `tests/chaos.rs`) run the same code; so do the
//! seed's ten-point pool test of [`integration`] (`cargo xtask integration`)
//! and `tests/integration.rs`.

pub mod chaos;
pub mod integration;
