//! Statements without server-side prepared statements, for when the statement
//! cache is off (`statement_cache_size = 0`): the mode that works behind
//! PgBouncer in transaction pooling mode.
//!
//! `postgres::Client::query(&str)` prepares a *named* statement in one round
//! trip and executes it in the next; behind PgBouncer in transaction mode the
//! two may land on different server connections ("prepared statement \"s12\"
//! does not exist"). With the cache off a statement runs as one
//! self-contained exchange on the unnamed statement (`query_typed`), with
//! parameter types learnt once per SQL text and connection inside a
//! transaction (`BEGIN`, prepare, close, `ROLLBACK`), or inside the caller's
//! transaction when there is one, and kept in a small client-side cache.

use r2d2_postgres::postgres::Client;
use r2d2_postgres::postgres::types::Type;

/// The parameter types of `sql`, asked of the server; with `own_transaction`
/// inside `BEGIN` … `ROLLBACK` so that PgBouncer keeps one server connection
/// for the prepare and the close.
pub(crate) fn describe(
    client: &mut Client,
    sql: &str,
    own_transaction: bool,
) -> Result<Vec<Type>, r2d2_postgres::postgres::Error> {
    if own_transaction {
        client.batch_execute("BEGIN")?;
    }
    // Dropping the statement queues its Close before the ROLLBACK below.
    let described = client.prepare(sql).map(|s| s.params().to_vec());
    if own_transaction {
        client.batch_execute("ROLLBACK")?;
    }
    described
}
