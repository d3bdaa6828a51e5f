//! Store constructors for the suite: each returns a fresh, empty store.

use std::time::Duration;

use pgline_async::{PgManager, PgPool, PoolOptions};
use pgline_mfg::{MemoryStore, PgStore};
use pgline_sync::{SyncManager, SyncPool};
use pgline_testkit::PgServer;

/// A pool on `db` of the shared server.
pub async fn async_pool_on(db: &str, max: u32) -> PgPool {
    let server = PgServer::shared();
    let manager = PgManager::new(server.config(db), None, 100);
    let options = PoolOptions::new(0, max).with_acquire_timeout(Duration::from_secs(10));
    let pool = PgPool::new(manager, options).expect("valid pool options");
    pool.initialize().await.expect("pool initializes");
    pool
}

/// A sync (r2d2) pool on `db` of the shared server.
pub fn sync_pool_on(db: &str, max: u32) -> SyncPool {
    let server = PgServer::shared();
    let manager = SyncManager::new(server.config(db), None, 100);
    let options =
        pgline_sync::PoolOptions::new(0, max).with_acquire_timeout(Duration::from_secs(10));
    let pool = SyncPool::new(manager, options).expect("valid pool options");
    pool.initialize().expect("pool initializes");
    pool
}

/// A fresh database of the shared server.
pub async fn fresh_database() -> String {
    PgServer::shared()
        .fresh_database()
        .await
        .expect("fresh database")
}

/// The PostgreSQL store on the async backend, on a fresh, migrated database.
pub async fn async_store() -> PgStore<PgPool> {
    let db = fresh_database().await;
    let store = PgStore::new(async_pool_on(&db, 10).await);
    let report = store.migrate().await.expect("migrations apply");
    assert_eq!(report.applied, vec![1]);
    store
}

/// The in-memory store.
pub async fn memory_store() -> MemoryStore {
    MemoryStore::new()
}

/// The PostgreSQL store on the sync backend, on a fresh, migrated database.
pub async fn sync_store() -> PgStore<SyncPool> {
    let db = fresh_database().await;
    let store = PgStore::new(sync_pool_on(&db, 10));
    let report = store.migrate().await.expect("migrations apply");
    assert_eq!(report.applied, vec![1]);
    store
}
