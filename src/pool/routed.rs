//! [`Routed`]: a query taken apart, so it can be classified before it runs.

use sqlx::error::BoxDynError;
use sqlx::{Database, Execute, SqlStr};

use crate::backend::Backend;

/// A query taken apart and put back together, so it can be classified before it runs.
///
/// sqlx 0.9's [`Execute::sql`] consumes the query, so the routing layer first takes what the
/// driver will ask for later — `persistent()`, `statement()`, `take_arguments()` — and only
/// then the SQL text. Argument encoding errors are kept and handed back to the driver, which
/// reports them exactly as it would have.
pub(super) struct Routed<DB: Database> {
    pub(super) sql: SqlStr,
    statement: Option<DB::Statement>,
    arguments: Option<Result<Option<DB::Arguments>, BoxDynError>>,
    persistent: bool,
}

impl<DB: Backend> Routed<DB> {
    pub(super) fn new<'q>(mut query: impl Execute<'q, DB>) -> Self {
        let persistent = query.persistent();
        let statement = query.statement().cloned();
        let arguments = Some(query.take_arguments());
        Routed {
            sql: query.sql(),
            statement,
            arguments,
            persistent,
        }
    }

    /// A copy to run again on the primary if a replica refuses this one. `None` when the
    /// arguments failed to encode (the driver reports that; there is nothing to re-run).
    pub(super) fn try_clone(&self) -> Option<Self> {
        let arguments = match &self.arguments {
            Some(Ok(args)) => Some(Ok(args.clone())),
            Some(Err(_)) => return None,
            None => None,
        };
        Some(Routed {
            sql: self.sql.clone(),
            statement: self.statement.clone(),
            arguments,
            persistent: self.persistent,
        })
    }
}

impl<'q, DB: Database> Execute<'q, DB> for Routed<DB> {
    fn sql(self) -> SqlStr {
        self.sql
    }

    fn statement(&self) -> Option<&DB::Statement> {
        self.statement.as_ref()
    }

    fn take_arguments(&mut self) -> Result<Option<DB::Arguments>, BoxDynError> {
        self.arguments.take().unwrap_or(Ok(None))
    }

    fn persistent(&self) -> bool {
        self.persistent
    }
}
