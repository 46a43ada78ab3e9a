//! Schema migrations, embedded in the binary (no files needed at run time).
//! Each backend has its own folder under `migrations/` with the same version
//! numbers; a test keeps the two lists in step.

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// `(version, description, sqlite sql, postgres sql)`, in order.
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "ledger",
        include_str!("../../migrations/sqlite/0001_ledger.sql"),
        include_str!("../../migrations/postgres/0001_ledger.sql"),
    ),
    (
        2,
        "price books",
        include_str!("../../migrations/sqlite/0002_price_books.sql"),
        include_str!("../../migrations/postgres/0002_price_books.sql"),
    ),
    (
        3,
        "invoices",
        include_str!("../../migrations/sqlite/0003_invoices.sql"),
        include_str!("../../migrations/postgres/0003_invoices.sql"),
    ),
    (
        4,
        "container time index",
        include_str!("../../migrations/sqlite/0004_container_time_index.sql"),
        include_str!("../../migrations/postgres/0004_container_time_index.sql"),
    ),
    (
        5,
        "usage rollup",
        include_str!("../../migrations/sqlite/0005_usage_rollup.sql"),
        include_str!("../../migrations/postgres/0005_usage_rollup.sql"),
    ),
    (
        6,
        "api keys",
        include_str!("../../migrations/sqlite/0006_api_keys.sql"),
        include_str!("../../migrations/postgres/0006_api_keys.sql"),
    ),
    (
        7,
        "container cover index",
        include_str!("../../migrations/sqlite/0007_container_cover_index.sql"),
        include_str!("../../migrations/postgres/0007_container_cover_index.sql"),
    ),
    (
        8,
        "budgets",
        include_str!("../../migrations/sqlite/0008_budgets.sql"),
        include_str!("../../migrations/postgres/0008_budgets.sql"),
    ),
    (
        9,
        "container rollup",
        include_str!("../../migrations/sqlite/0009_container_rollup.sql"),
        include_str!("../../migrations/postgres/0009_container_rollup.sql"),
    ),
    (
        10,
        "container spans",
        include_str!("../../migrations/sqlite/0010_container_spans.sql"),
        include_str!("../../migrations/postgres/0010_container_spans.sql"),
    ),
    (
        11,
        "retention",
        include_str!("../../migrations/sqlite/0011_retention.sql"),
        include_str!("../../migrations/postgres/0011_retention.sql"),
    ),
    (
        12,
        "proxy keys",
        include_str!("../../migrations/sqlite/0012_proxy_keys.sql"),
        include_str!("../../migrations/postgres/0012_proxy_keys.sql"),
    ),
    (
        13,
        "refusals",
        include_str!("../../migrations/sqlite/0013_refusals.sql"),
        include_str!("../../migrations/postgres/0013_refusals.sql"),
    ),
    (
        14,
        "attribution",
        include_str!("../../migrations/sqlite/0014_attribution.sql"),
        include_str!("../../migrations/postgres/0014_attribution.sql"),
    ),
    (
        15,
        "container attribution",
        include_str!("../../migrations/sqlite/0015_container_attribution.sql"),
        include_str!("../../migrations/postgres/0015_container_attribution.sql"),
    ),
    (
        16,
        "plans",
        include_str!("../../migrations/sqlite/0016_plans.sql"),
        include_str!("../../migrations/postgres/0016_plans.sql"),
    ),
    (
        17,
        "credits",
        include_str!("../../migrations/sqlite/0017_credits.sql"),
        include_str!("../../migrations/postgres/0017_credits.sql"),
    ),
    (
        18,
        "billing details",
        include_str!("../../migrations/sqlite/0018_billing_details.sql"),
        include_str!("../../migrations/postgres/0018_billing_details.sql"),
    ),
    (
        19,
        "invoice documents",
        include_str!("../../migrations/sqlite/0019_invoice_documents.sql"),
        include_str!("../../migrations/postgres/0019_invoice_documents.sql"),
    ),
];

/// Version numbers of the embedded migrations.
pub fn versions() -> Vec<i64> {
    MIGRATIONS.iter().map(|m| m.0).collect()
}

fn migrator(
    pick: fn(&(i64, &'static str, &'static str, &'static str)) -> &'static str,
) -> Migrator {
    migrator_until(pick, i64::MAX)
}

fn migrator_until(
    pick: fn(&(i64, &'static str, &'static str, &'static str)) -> &'static str,
    last: i64,
) -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .filter(|m| m.0 <= last)
            .map(|m| {
                Migration::new(
                    m.0,
                    m.1.into(),
                    MigrationType::Simple,
                    pick(m).into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

pub fn sqlite() -> Migrator {
    migrator(|m| m.2)
}

pub fn postgres() -> Migrator {
    migrator(|m| m.3)
}

/// The migrations up to `last` only: for testing upgrades of older ledgers.
pub fn until(backend: crate::store::Backend, last: i64) -> Migrator {
    match backend {
        crate::store::Backend::Sqlite => migrator_until(|m| m.2, last),
        crate::store::Backend::Postgres => migrator_until(|m| m.3, last),
    }
}
