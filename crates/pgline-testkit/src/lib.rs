//! Test support for pgline: throwaway PostgreSQL servers started from the
//! binaries on this machine, and a TCP fault proxy.
