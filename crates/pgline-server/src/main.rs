//! `pgline-server`: the manufacturing API and health endpoints on a pgline pool.

fn main() {}
