//! Versioned schema migrations, embedded in the crate.
//!
//! Each migration runs in its own transaction that first takes a
//! transaction-level advisory lock (`pg_advisory_xact_lock`), so instances
//! starting together apply every migration exactly once, and the lock can
//! never outlive the transaction or be released on another pooled connection
//! (which a session-level lock taken through a pool could). Under the lock the
//! transaction creates `schema_migrations` if needed, skips the migration if
//! its version is recorded, and otherwise runs it and records it: a crash
//! midway leaves no half-applied version.

use pgline_core::{Database, Session};

use crate::error::DomainError;

/// One schema migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Strictly increasing, starting at 1.
    pub version: i32,
    /// A short name, e.g. `init`.
    pub name: &'static str,
    /// The SQL, run as one simple-query string inside the transaction.
    pub sql: &'static str,
}

impl Migration {
    /// A checksum of the SQL (FNV-1a), recorded to notice a migration edited
    /// after it was applied.
    pub fn checksum(&self) -> i64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in self.sql.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        i64::from_ne_bytes(hash.to_ne_bytes())
    }
}

/// The migrations of this crate, in order.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "init",
    sql: include_str!("../migrations/0001_init.sql"),
}];

/// The advisory lock key of the migrations (`pglinemf` in ASCII).
pub const MIGRATION_LOCK_KEY: i64 = 0x7067_6c69_6e65_6d66;

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationReport {
    /// Versions this call applied, in order (empty when the schema was current).
    pub applied: Vec<i32>,
    /// The schema version after the call.
    pub version: i32,
}

/// Brings the schema up to date; safe to call from every instance at start.
///
/// Re-running is a no-op. Errors are [`DomainError::Unavailable`] when the
/// database cannot be reached and [`DomainError::Database`] when a migration
/// fails (its transaction is rolled back).
///
/// ```no_run
/// # async fn demo<D: pgline_core::Database>(db: &D) -> Result<(), pgline_mfg::DomainError> {
/// let report = pgline_mfg::migrate(db).await?;
/// println!("schema at version {}, applied {:?}", report.version, report.applied);
/// # Ok(()) }
/// ```
pub async fn migrate<D: Database>(db: &D) -> Result<MigrationReport, DomainError> {
    let mut applied = Vec::new();
    for migration in MIGRATIONS {
        let ran = db
            .transaction(move |tx| Box::pin(apply(tx, migration)))
            .await?;
        if ran {
            tracing::info!(
                version = migration.version,
                name = migration.name,
                "applied schema migration"
            );
            applied.push(migration.version);
        }
    }
    Ok(MigrationReport {
        applied,
        version: MIGRATIONS.last().map_or(0, |m| m.version),
    })
}

/// Applies `migration` unless it is recorded; true when it ran.
async fn apply(tx: &mut dyn Session, migration: &'static Migration) -> Result<bool, DomainError> {
    // Cancellation: dropping this future rolls the transaction back, which
    // also releases the lock.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    integer     PRIMARY KEY,
            name       text        NOT NULL,
            checksum   bigint      NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await?;
    let recorded = tx
        .query_opt(
            "SELECT checksum FROM schema_migrations WHERE version = $1",
            &[&migration.version],
        )
        .await?;
    if let Some(row) = recorded {
        let checksum: i64 = row
            .try_get(0)
            .map_err(|_| DomainError::unexpected("schema_migrations.checksum"))?;
        if checksum != migration.checksum() {
            tracing::warn!(
                version = migration.version,
                name = migration.name,
                "schema migration was edited after it was applied; the database keeps the applied version"
            );
        }
        return Ok(false);
    }
    tx.batch_execute(migration.sql).await?;
    tx.execute(
        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
        &[&migration.version, &migration.name, &migration.checksum()],
    )
    .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(usize::try_from(m.version).ok(), Some(i + 1), "{}", m.name);
            assert!(!m.sql.trim().is_empty());
        }
    }

    #[test]
    fn checksum_is_stable_and_sensitive() {
        let a = Migration {
            version: 1,
            name: "a",
            sql: "SELECT 1",
        };
        let b = Migration {
            sql: "SELECT 2",
            ..a
        };
        assert_eq!(a.checksum(), a.checksum());
        assert_ne!(a.checksum(), b.checksum());
    }
}
