//! Either backend's connection pool behind one handle, so that SQL which is
//! the same on both (`$N` placeholders work in SQLite and PostgreSQL alike)
//! is written once: [`on_pool!`] compiles the block once per pool type, and
//! rows map through `#[derive(sqlx::FromRow)]` structs that fit both.

use sqlx::{PgPool, SqlitePool};

#[derive(Clone, Copy)]
pub enum PoolRef<'a> {
    Sqlite(&'a SqlitePool),
    Postgres(&'a PgPool),
}

impl PoolRef<'_> {
    /// How a write transaction starts: SQLite takes its one write lock up
    /// front, so a write never fails half-way on a lock upgrade.
    pub fn begin_write(self) -> &'static str {
        match self {
            PoolRef::Sqlite(_) => "BEGIN IMMEDIATE",
            PoolRef::Postgres(_) => "BEGIN",
        }
    }
}

/// A backend: its pool, and the lock that serialises writers inside the
/// process when the database has a single writer. Every role trait whose
/// SQL is shared is implemented once for all `Pooled` stores
/// (see [`super::shared`]).
pub trait Pooled: Send + Sync + 'static {
    fn pool(&self) -> PoolRef<'_>;

    /// Held around writes on a database with one writer (SQLite): queueing
    /// here is cheaper than spinning on the database's busy timeout.
    fn writer_lock(&self) -> Option<&tokio::sync::Mutex<()>> {
        None
    }
}

/// Run `$body` with `$p` bound to the concrete pool (`&SqlitePool` or
/// `&PgPool`); both arms must produce the same type.
macro_rules! on_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            $crate::store::pool::PoolRef::Sqlite($p) => $body,
            $crate::store::pool::PoolRef::Postgres($p) => $body,
        }
    };
}
pub(crate) use on_pool;
