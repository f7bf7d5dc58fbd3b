//! Running statements: binding values, bounded concurrency, point reads and paged
//! scans.

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use scylla::statement::bound::BoundStatement;
use scylla::statement::prepared::PreparedStatement;

use crate::Result;

use super::errors::db_err;
use super::{ScyllaStore, READ_CONCURRENCY, WRITE_CONCURRENCY};

/// Runs futures with at most [`READ_CONCURRENCY`] in flight; results in input order.
///
/// The futures are boxed because rustc cannot prove that a stream built from a
/// closure over borrowed items is `Send` inside an `async_trait` method (a known
/// limitation with higher-ranked lifetimes); a `Vec` of boxed futures sidesteps it.
pub(super) async fn in_order<T: Send>(futures: Vec<BoxFuture<'_, Result<T>>>) -> Result<Vec<T>> {
    futures::stream::iter(futures)
        .buffered(READ_CONCURRENCY)
        .try_collect()
        .await
}

/// Binds values to a prepared statement (a cheap clone: the statement is shared).
pub(super) fn bind(
    statement: &PreparedStatement,
    values: &impl scylla::serialize::row::SerializeRow,
) -> Result<BoundStatement> {
    statement
        .clone()
        .bind(values)
        .map_err(db_err("binding values"))
}

/// Like [`bind`], with a page size fitted to how many rows the caller still needs.
pub(super) fn bind_paged(
    statement: &PreparedStatement,
    values: &impl scylla::serialize::row::SerializeRow,
    wanted: usize,
) -> Result<BoundStatement> {
    let mut bound = bind(statement, values)?;
    bound.set_page_size(wanted.saturating_add(1).clamp(16, 1000) as i32);
    Ok(bound)
}

impl ScyllaStore {
    pub(super) async fn run(&self, bound: &BoundStatement) -> Result<()> {
        self.session
            .execute_bound_unpaged(bound)
            .await
            .map_err(db_err("writing"))?;
        Ok(())
    }

    /// Runs writes with at most [`WRITE_CONCURRENCY`] in flight; fails if any fails
    /// (the others may have been applied: harmless, every write is idempotent).
    pub(super) async fn run_all(&self, writes: Vec<BoundStatement>) -> Result<()> {
        let runs: Vec<BoxFuture<'_, Result<()>>> =
            writes.iter().map(|w| self.run(w).boxed()).collect();
        futures::stream::iter(runs)
            .buffer_unordered(WRITE_CONCURRENCY)
            .try_collect::<()>()
            .await
    }

    /// Point read of at most one row.
    pub(super) async fn get_one<R>(
        &self,
        statement: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
        what: &'static str,
    ) -> Result<Option<R>>
    where
        R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
    {
        let result = self
            .session
            .execute_unpaged(statement, values)
            .await
            .map_err(db_err(what))?;
        let rows = result.into_rows_result().map_err(db_err(what))?;
        rows.maybe_first_row::<R>().map_err(db_err(what))
    }

    /// Streams the rows of a (paged) query to `visit` until it returns `false`.
    pub(super) async fn scan<R>(
        &self,
        bound: BoundStatement,
        what: &'static str,
        mut visit: impl FnMut(R) -> Result<bool>,
    ) -> Result<()>
    where
        R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
    {
        let pager = self
            .session
            .execute_bound_iter(bound)
            .await
            .map_err(db_err(what))?;
        let mut rows = pager.rows_stream::<R>().map_err(db_err(what))?;
        while let Some(row) = rows.try_next().await.map_err(db_err(what))? {
            if !visit(row)? {
                break; // dropping the stream stops fetching further pages
            }
        }
        Ok(())
    }
}
