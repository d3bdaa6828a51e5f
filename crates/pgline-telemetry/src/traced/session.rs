//! [`TracedSession`]: a transaction's session whose statements are traced.

use std::sync::Arc;

use pgline_core::{BoxFuture, DbError, Params, Row, Session};

use super::op::{Outcome, Shared};
use super::spans::{InScope, Parent};

/// A [`Session`] that gives each statement a span, a duration and a log line,
/// exactly as [`Traced`](super::Traced) does outside transactions. `Traced`
/// wraps every transaction's session in one (through its
/// [`SessionLayer`](pgline_core::SessionLayer)); the closure sees it as its
/// `&mut dyn Session`.
pub struct TracedSession<'s> {
    inner: Box<dyn Session + 's>,
    shared: Arc<Shared>,
    /// The transaction's span.
    parent: Option<Parent>,
}

impl<'s> TracedSession<'s> {
    pub(crate) fn new(
        inner: Box<dyn Session + 's>,
        shared: Arc<Shared>,
        parent: Option<Parent>,
    ) -> Self {
        Self {
            inner,
            shared,
            parent,
        }
    }
}

impl std::fmt::Debug for TracedSession<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracedSession")
            .field("namespace", &self.shared.namespace)
            .finish_non_exhaustive()
    }
}

async fn traced<T>(
    shared: &Shared,
    parent: Option<Parent>,
    sql: &str,
    parameterized: bool,
    mut run: BoxFuture<'_, Result<T, DbError>>,
) -> Result<T, DbError> {
    let operation = shared.statement(sql, parameterized, parent);
    let result = InScope::new(run.as_mut(), operation.parent()).await;
    operation.finish(match &result {
        Ok(_) => Outcome::Ok,
        Err(e) => Outcome::Db(e),
    });
    result
}

impl Session for TracedSession<'_> {
    fn query<'a>(
        &'a mut self,
        sql: &'a str,
        params: Params<'a>,
    ) -> BoxFuture<'a, Result<Vec<Row>, DbError>> {
        let run = self.inner.query(sql, params);
        Box::pin(traced(
            &self.shared,
            self.parent,
            sql,
            !params.is_empty(),
            run,
        ))
    }

    fn execute<'a>(
        &'a mut self,
        sql: &'a str,
        params: Params<'a>,
    ) -> BoxFuture<'a, Result<u64, DbError>> {
        let run = self.inner.execute(sql, params);
        Box::pin(traced(
            &self.shared,
            self.parent,
            sql,
            !params.is_empty(),
            run,
        ))
    }

    fn batch_execute<'a>(&'a mut self, sql: &'a str) -> BoxFuture<'a, Result<(), DbError>> {
        let run = self.inner.batch_execute(sql);
        Box::pin(traced(&self.shared, self.parent, sql, false, run))
    }
}
