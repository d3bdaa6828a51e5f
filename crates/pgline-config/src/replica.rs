//! The optional read pool on standbys: `DB_READ_HOSTS` and its pool settings
//! (`[read_pool]` in the file).

use std::time::Duration;

use figment::value::Value;

use crate::model::{Endpoint, PoolConfig};
use crate::reader::Reader;
use crate::{Config, TargetSessionAttrs};

/// How long a read waits for a standby connection by default: short, because a
/// read that cannot get one goes to the primary instead.
const DEFAULT_ACQUIRE: Duration = Duration::from_secs(2);
/// How long reads stay on the primary after a standby failed, by default.
const DEFAULT_FALLBACK: Duration = Duration::from_secs(5);
/// Largest pool size accepted (as for the primary pool).
const MAX_CONNECTIONS: u64 = 10_000;
/// Largest duration in milliseconds (as for the primary pool).
const MAX_MILLIS: u64 = i32::MAX as u64;

/// The read pool: connections to hot standbys for reads that tolerate
/// replication lag (`/status` figures, order and panel look-ups).
///
/// Present when `DB_READ_HOSTS` (or `read_pool.hosts`) is set. Everything
/// not listed here — database name, user, password, TLS, timeouts — is the
/// primary's. Connections are opened with `target_session_attrs=read-only`,
/// so a listed server that accepts writes is skipped; when no standby
/// answers, reads go to the primary pool.
///
/// ```
/// use std::time::Duration;
/// use pgline_config::{Config, Endpoint};
///
/// let config = Config::from_vars([
///     ("DB_HOST", "db1"),
///     ("DB_READ_HOSTS", "db2, db3:5433"),
///     ("DB_READ_POOL_MAX", "8"),
/// ])?;
/// let read = config.read_pool.as_ref().expect("a read pool");
/// assert_eq!(read.hosts, [Endpoint::new("db2", 5432), Endpoint::new("db3", 5433)]);
/// assert_eq!(read.max_connections, 8);
/// assert_eq!(read.fallback_period, Duration::from_secs(5));
///
/// let err = Config::from_vars([("DB_READ_HOSTS", "db2:http")]).unwrap_err();
/// assert!(err.to_string().starts_with("DB_READ_HOSTS: expected"));
/// # Ok::<(), pgline_config::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPoolConfig {
    /// The standbys, tried in order (`DB_READ_HOSTS`: `host[:port]`, comma-separated;
    /// a host without a port gets the primary's first port).
    pub hosts: Vec<Endpoint>,
    /// Connections kept open (`DB_READ_POOL_MIN`); default the primary pool's minimum.
    pub min_connections: u32,
    /// Upper bound on open connections (`DB_READ_POOL_MAX`); default the
    /// primary pool's maximum.
    pub max_connections: u32,
    /// How long a read waits for a standby connection before it goes to the
    /// primary (`DB_READ_POOL_ACQUIRE_MS`, default 2 s).
    pub acquire_timeout: Duration,
    /// After a standby failed (connection refused or lost, no connection in
    /// time), reads go straight to the primary for this long before the
    /// standby is tried again (`DB_READ_FALLBACK_MS`, default 5 s).
    pub fallback_period: Duration,
}

impl Config {
    /// The configuration of the read pool as a whole [`Config`], for building
    /// it with the same backend code as the primary pool (`PgPool::connect`,
    /// `SyncPool::connect`): the standbys as hosts,
    /// `target_session_attrs=read-only`, and the read pool's sizes and
    /// acquire timeout. `None` without `DB_READ_HOSTS`.
    ///
    /// ```
    /// use pgline_config::{Config, TargetSessionAttrs};
    ///
    /// let config = Config::from_vars([("DB_READ_HOSTS", "standby1,standby2")])?;
    /// let read = config.read_pool_config().expect("configured");
    /// assert_eq!(read.database.hosts.len(), 2);
    /// assert_eq!(read.database.target_session_attrs, TargetSessionAttrs::ReadOnly);
    /// assert!(read.read_pool.is_none());
    /// assert!(Config::from_vars([("DB_HOST", "db1")])?.read_pool_config().is_none());
    /// # Ok::<(), pgline_config::ConfigError>(())
    /// ```
    pub fn read_pool_config(&self) -> Option<Config> {
        let read = self.read_pool.as_ref()?;
        let mut config = self.clone();
        config.read_pool = None;
        config.database.hosts = read.hosts.clone();
        config.database.target_session_attrs = TargetSessionAttrs::ReadOnly;
        config.pool.min_connections = read.min_connections;
        config.pool.max_connections = read.max_connections;
        config.pool.acquire_timeout = read.acquire_timeout;
        Some(config)
    }
}

/// `host`, `host:port`, `[v6]:port`, a bare IPv6 address, or a socket folder.
fn endpoint(item: &str, default_port: u16) -> Option<Endpoint> {
    let item = item.trim();
    if item.is_empty() || item.contains(char::is_whitespace) {
        return None;
    }
    if item.starts_with('/') {
        return Some(Endpoint::new(item, default_port));
    }
    if let Some(rest) = item.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => default_port,
            _ => after.strip_prefix(':')?.parse().ok().filter(|p| *p > 0)?,
        };
        return (!host.is_empty()).then(|| Endpoint::new(host, port));
    }
    match item.matches(':').count() {
        0 => Some(Endpoint::new(item, default_port)),
        1 => {
            let (host, port) = item.split_once(':')?;
            let port = port.parse().ok().filter(|p| *p > 0)?;
            (!host.is_empty()).then(|| Endpoint::new(host, port))
        }
        _ => Some(Endpoint::new(item, default_port)), // IPv6 without a port
    }
}

fn endpoints(value: &Value, default_port: u16) -> Option<Vec<Endpoint>> {
    let items: Vec<Value> = match value {
        Value::Array(_, items) => items.clone(),
        Value::String(_, s) => s.split(',').map(Value::from).collect(),
        _ => return None,
    };
    let hosts: Option<Vec<Endpoint>> = items
        .iter()
        .map(|item| endpoint(item.as_str()?, default_port))
        .collect();
    hosts.filter(|hosts| !hosts.is_empty())
}

fn whole(value: &Value) -> Option<u64> {
    match value {
        Value::Num(_, n) => n.to_u128_lossy().and_then(|n| u64::try_from(n).ok()),
        Value::String(_, s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl Reader<'_> {
    /// `[read_pool]`: `None` unless hosts are given. `pool` and `primary_port`
    /// give the defaults.
    pub(crate) fn read_pool(
        &mut self,
        pool: &PoolConfig,
        primary_port: u16,
    ) -> Option<ReadPoolConfig> {
        let hosts = self.read(
            "read_pool.hosts",
            "a comma-separated list of host[:port] (IPv6 as [address]:port), e.g. standby1,standby2:5433",
            |v| endpoints(v, primary_port),
        );
        let count = |key: &str, this: &mut Self, low: u64| {
            this.read(
                key,
                &format!("a whole number of connections from {low} to {MAX_CONNECTIONS}"),
                |v| whole(v).filter(|n| (low..=MAX_CONNECTIONS).contains(n)),
            )
            .and_then(|n| u32::try_from(n).ok())
        };
        let max = count("read_pool.max", self, 1);
        let min = count("read_pool.min", self, 0);
        let millis = |key: &str, this: &mut Self| {
            this.read(
                key,
                &format!("a duration in whole milliseconds from 1 to {MAX_MILLIS}, e.g. 5000"),
                |v| whole(v).filter(|n| (1..=MAX_MILLIS).contains(n)),
            )
            .map(Duration::from_millis)
        };
        let acquire_timeout = millis("read_pool.acquire_timeout_ms", self);
        let fallback_period = millis("read_pool.fallback_ms", self);
        let max = max.unwrap_or(pool.max_connections);
        let min = min.unwrap_or(pool.min_connections.min(max));
        if min > max {
            let message = format!(
                "must not exceed the read pool maximum ({} = {max}), got {min}",
                self.setting("read_pool.max")
            );
            self.problem(self.setting("read_pool.min"), message);
        }
        let hosts = hosts?;
        Some(ReadPoolConfig {
            hosts,
            min_connections: min,
            max_connections: max,
            acquire_timeout: acquire_timeout.unwrap_or(DEFAULT_ACQUIRE),
            fallback_period: fallback_period.unwrap_or(DEFAULT_FALLBACK),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn endpoints_parse() {
        let e = |s: &str| endpoint(s, 5432);
        assert_eq!(e("db2"), Some(Endpoint::new("db2", 5432)));
        assert_eq!(e(" db2:6432 "), Some(Endpoint::new("db2", 6432)));
        assert_eq!(e("[::1]:5433"), Some(Endpoint::new("::1", 5433)));
        assert_eq!(e("[::1]"), Some(Endpoint::new("::1", 5432)));
        assert_eq!(e("fe80::1"), Some(Endpoint::new("fe80::1", 5432)));
        assert_eq!(
            e("/var/run/postgresql"),
            Some(Endpoint::new("/var/run/postgresql", 5432))
        );
        for bad in [
            "",
            "db2:",
            "db2:0",
            "db2:99999",
            ":5432",
            "db 2",
            "[::1]x",
            "[]:5",
        ] {
            assert_eq!(e(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn absent_without_hosts() {
        let config = Config::from_vars([("DB_READ_POOL_MAX", "3")]).unwrap();
        assert!(config.read_pool.is_none());
        assert!(config.read_pool_config().is_none());
    }

    #[test]
    fn defaults_follow_the_primary_pool() {
        let config = Config::from_vars([
            ("DB_PORT", "6000"),
            ("DB_POOL_MIN", "3"),
            ("DB_POOL_MAX", "7"),
            ("DB_READ_HOSTS", "r1,r2:6001"),
        ])
        .unwrap();
        let read = config.read_pool.clone().unwrap();
        assert_eq!(
            read.hosts,
            [Endpoint::new("r1", 6000), Endpoint::new("r2", 6001)]
        );
        assert_eq!((read.min_connections, read.max_connections), (3, 7));
        assert_eq!(read.acquire_timeout, DEFAULT_ACQUIRE);
        let derived = config.read_pool_config().unwrap();
        assert_eq!(derived.pool.acquire_timeout, DEFAULT_ACQUIRE);
        let pg = derived.to_tokio_postgres();
        assert_eq!(pg.get_ports(), [6000, 6001]);
        assert_eq!(
            pg.get_target_session_attrs(),
            tokio_postgres::config::TargetSessionAttrs::ReadOnly
        );
    }

    #[test]
    fn errors_name_the_variable() {
        let cases = [
            (
                "DB_READ_HOSTS",
                "r1:x",
                "DB_READ_HOSTS: expected a comma-separated list",
            ),
            (
                "DB_READ_POOL_MAX",
                "0",
                "DB_READ_POOL_MAX: expected a whole number",
            ),
            (
                "DB_READ_POOL_MIN",
                "-1",
                "DB_READ_POOL_MIN: expected a whole number",
            ),
            (
                "DB_READ_POOL_ACQUIRE_MS",
                "0",
                "DB_READ_POOL_ACQUIRE_MS: expected a duration",
            ),
            (
                "DB_READ_FALLBACK_MS",
                "soon",
                "DB_READ_FALLBACK_MS: expected a duration",
            ),
        ];
        for (var, value, start) in cases {
            let err = Config::from_vars([("DB_READ_HOSTS", "r1"), (var, value)]).unwrap_err();
            assert!(err.to_string().starts_with(start), "{var}: {err}");
        }
        let err = Config::from_vars([
            ("DB_READ_HOSTS", "r1"),
            ("DB_READ_POOL_MIN", "5"),
            ("DB_READ_POOL_MAX", "2"),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "DB_READ_POOL_MIN: must not exceed the read pool maximum (DB_READ_POOL_MAX = 2), got 5"
        );
    }

    #[test]
    fn toml_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgline.toml");
        std::fs::write(
            &path,
            "[read_pool]\nhosts = [\"r1\", \"r2:5440\"]\nmin = 1\nmax = 4\n\
             acquire_timeout_ms = 1500\nfallback_ms = 2500\n",
        )
        .unwrap();
        let config = Config::from_sources([("NODE_ENV", "test")], Some(&path)).unwrap();
        let read = config.read_pool.unwrap();
        assert_eq!(read.hosts.len(), 2);
        assert_eq!((read.min_connections, read.max_connections), (1, 4));
        assert_eq!(read.acquire_timeout, Duration::from_millis(1500));
        assert_eq!(read.fallback_period, Duration::from_millis(2500));

        std::fs::write(&path, "[read_pool]\nhosts = \"r1\"\nmax = \"many\"\n").unwrap();
        let err = Config::from_sources([("NODE_ENV", "test")], Some(&path)).unwrap_err();
        assert!(err.to_string().starts_with("read_pool.max in "), "{err}");
    }
}
