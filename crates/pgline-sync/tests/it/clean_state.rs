//! A connection is never handed out inside a transaction or after an
//! interrupted statement.

use std::error::Error;

use pgline_sync::postgres::types::{IsNull, ToSql, Type, private::BytesMut, to_sql_checked};

use crate::common::{count, idle_in_transaction, outside_transaction, pool};

#[test]
fn a_raw_begin_is_detected_and_reset() {
    let pool = pool(1, 1);
    for sql in [
        "BEGIN",
        "begin isolation level serializable",
        "SELECT 1; START TRANSACTION",
    ] {
        {
            let mut conn = pool.get().unwrap();
            conn.batch_execute(sql).unwrap();
            assert!(
                !outside_transaction(&mut conn),
                "{sql} opened a transaction"
            );
        }
        let mut conn = pool.get().unwrap();
        assert!(
            outside_transaction(&mut conn),
            "handed out inside a transaction after {sql}"
        );
    }
    // Through the raw client too.
    {
        let mut conn = pool.get().unwrap();
        conn.client_unchecked()
            .unwrap()
            .batch_execute("BEGIN")
            .unwrap();
    }
    let mut conn = pool.get().unwrap();
    assert!(outside_transaction(&mut conn));
    drop(conn);
    assert_eq!(pool.stats().created_total, 1, "reset, never replaced");
}

#[test]
fn an_aborted_transaction_is_reset() {
    let pool = pool(1, 1);
    {
        let mut conn = pool.get().unwrap();
        conn.batch_execute("BEGIN").unwrap();
        assert!(conn.batch_execute("SELECT 1/0").is_err());
    }
    let mut conn = pool.get().unwrap();
    assert!(outside_transaction(&mut conn));
}

#[test]
fn a_statement_with_begin_in_a_pool_call_is_reset_too() {
    let pool = pool(1, 1);
    pool.batch_execute("CREATE TABLE t (v int)").unwrap();
    pool.batch_execute("BEGIN; INSERT INTO t VALUES (1)")
        .unwrap();
    assert_eq!(
        count(&pool),
        0,
        "the open transaction was rolled back on return"
    );
    assert_eq!(idle_in_transaction(&pool), 0);
}

/// A parameter whose encoding panics, to interrupt a statement midway.
#[derive(Debug)]
struct Explodes;

impl ToSql for Explodes {
    fn to_sql(&self, _: &Type, _: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        panic!("encoding failed");
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

#[test]
fn a_statement_interrupted_by_a_panic_closes_the_connection() {
    let pool = pool(1, 1);
    let p = pool.clone();
    let joined = std::thread::spawn(move || {
        let mut conn = p.get().unwrap();
        let mut tx = conn.transaction().unwrap();
        let _ = tx.query("SELECT $1::int", &[&Explodes]);
    })
    .join();
    assert!(joined.is_err());
    let s = pool.stats();
    assert_eq!(s.closed_total.broken, 1, "{s:?}");
    assert_eq!(s.in_use, 0, "{s:?}");
    let mut conn = pool.get().unwrap();
    assert!(outside_transaction(&mut conn));
    assert_eq!(conn.query_one("SELECT 1", &[]).unwrap().get::<_, i32>(0), 1);
}
