//! Configuration for pgline: profile defaults, an optional TOML file and the
//! environment, layered with figment and validated.
