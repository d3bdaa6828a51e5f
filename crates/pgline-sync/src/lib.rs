//! The blocking pgline backend on r2d2 and r2d2_postgres.
//!
//! For thread-based programs (station controllers, batch jobs); it implements
//! the same `pgline-core` traits as the async pool.
