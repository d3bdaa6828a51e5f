//! End-to-end tests across the pgline crates live in `tests/`.
