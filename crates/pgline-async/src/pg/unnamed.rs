//! Statements without server-side prepared statements, for when the statement
//! cache is off (`statement_cache_size = 0`): the mode that works behind
//! PgBouncer in transaction pooling mode.
//!
//! tokio-postgres's `query(&str)` prepares a *named* statement in one round
//! trip and executes it in the next. Behind PgBouncer in transaction mode the
//! two round trips may land on different server connections ("prepared
//! statement \"s12\" does not exist"), and a statement closed on the wrong one
//! leaks where another client's statement of the same name then collides. So
//! with the cache off a statement runs as one self-contained exchange on the
//! unnamed statement (`query_typed`: Parse, Bind, Describe, Execute, Sync).
//! Its parameter types are learnt once per SQL text and connection, inside a
//! transaction of their own (`BEGIN`, prepare, close, `ROLLBACK`: one server
//! connection throughout), or inside the caller's transaction when there is
//! one; they are kept in a small client-side cache (types do not depend on
//! which server connection answers).

use tokio_postgres::Client;
use tokio_postgres::types::Type;

/// The parameter types of `sql`, asked of the server. With `own_transaction`
/// the prepare runs inside `BEGIN` … `ROLLBACK`, so PgBouncer keeps one
/// server connection for the prepare and the close; without it the caller is
/// inside a transaction already.
pub(crate) async fn describe(
    client: &Client,
    sql: &str,
    own_transaction: bool,
) -> Result<Vec<Type>, tokio_postgres::Error> {
    if own_transaction {
        client.batch_execute("BEGIN").await?;
    }
    // Dropping the statement sends its Close before the ROLLBACK below.
    let described = client.prepare(sql).await.map(|s| s.params().to_vec());
    if own_transaction {
        client.batch_execute("ROLLBACK").await?;
    }
    described
}
