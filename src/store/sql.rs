//! SQL both backends run unchanged (`$N` placeholders work in SQLite and
//! PostgreSQL alike). Column names are the fields of the `FromRow` structs
//! the rows map to.

use crate::record::{Dimension, MAX_DIMENSIONS};

pub(super) const REJECTED_LIST: &str = "select id, raw, reason, message, line_number, column_number, field, source, \
    account_default, recorded_at_default, first_seen, last_seen, occurrences, status \
    from rejected where ($1 or status = 'open') order by id desc limit $2";

pub(super) const REJECTED_GET: &str = "select id, raw, reason, message, line_number, column_number, field, source, \
    account_default, recorded_at_default, first_seen, last_seen, occurrences, status \
    from rejected where id = $1";

pub(super) const RECORD_GET: &str = "select r.seq, r.record_key, r.account, r.kind, r.model, r.recorded_at, \
    r.started_at, r.batch, r.files_preloaded, r.uses_code_execution, r.web_tools_20260209, r.container_id, \
    r.input_tokens, r.output_tokens, r.cache_creation_input_tokens, r.cache_write_5m_tokens, \
    r.cache_write_1h_tokens, r.cache_read_tokens, r.web_search_requests, r.web_fetch_requests, \
    r.code_execution_requests, r.retention, \
    (select count(*) from record_iterations i where i.seq = r.seq) as iterations, b.raw \
    from records r join record_bodies b on b.seq = r.seq where r.record_key = $1";

pub(super) const COUNTS: &str = "select (select count(*) from records) as records, \
    (select count(*) from containers) as containers, \
    (select count(*) from rejected where status = 'open') as rejected_open";

pub(super) const MAX_SEQ: &str = "select cast(coalesce(max(seq), 0) as bigint) from records";

/// What follows the insert of a rejected line: the same line again counts
/// one more occurrence. Returns `(raw_hash, id)`.
pub(super) const QUARANTINE_UPSERT: &str = "on conflict (raw_hash) do update set last_seen = excluded.last_seen, \
    occurrences = rejected.occurrences + 1, reason = excluded.reason, message = excluded.message, \
    line_number = excluded.line_number, column_number = excluded.column_number, field = excluded.field, \
    source = excluded.source, status = 'open' \
    returning raw_hash, id";

/// Identity of a rejected line: its bytes and the defaults it was parsed
/// with, so the same bad line sent twice is one entry seen twice.
pub fn rejection_hash(r: &crate::record::NewRejection) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(&r.raw);
    h.update([0]);
    h.update(r.defaults.account.as_deref().unwrap_or_default().as_bytes());
    h.update([0]);
    h.update(r.defaults.recorded_at.unwrap_or_default().to_le_bytes());
    hex::encode(h.finalize())
}

/// Aggregation of token usage (or of extra iterations) for billing. `$1`/`$2`
/// bound the time, `$3` is the account or null, `$4` the last ledger seq to
/// include, `$5…` the tier thresholds.
pub(super) fn usage_sql(
    thresholds: usize,
    iterations: bool,
    one_account: bool,
    dims: &[Dimension],
) -> String {
    let (src, usage, model) = if iterations {
        (
            "record_iterations u join records r on r.seq = u.seq",
            "u",
            "coalesce(u.model, r.model)",
        )
    } else {
        ("records r", "r", "r.model")
    };
    let total = format!(
        "{usage}.input_tokens + {usage}.cache_creation_input_tokens + {usage}.cache_read_tokens"
    );
    let mut bucket = String::from("0");
    for i in 0..thresholds {
        bucket.push_str(&format!(
            " + (case when {total} > ${} then 1 else 0 end)",
            i + 5
        ));
    }
    // Two spellings, not `($3 is null or account = $3)`, so the planner can
    // use the (account, recorded_at) index for one account.
    let account = if one_account {
        "r.account = $3"
    } else {
        "cast($3 as text) is null"
    };
    let (fetch, code) = if iterations {
        ("0", "0")
    } else {
        ("r.web_fetch_requests", "r.code_execution_requests")
    };
    format!(
        "select r.account, {model} as model, r.recorded_at / {day} as day, \
         cast(case when r.batch then 1 else 0 end as bigint) as batch, \
         cast(case when r.speed = 'fast' then 1 else 0 end as bigint) as fast, \
         cast(case when r.inference_geo = 'us' then 1 else 0 end as bigint) as us, \
         cast({bucket} as bigint) as bucket, r.refusal, cast(count(*) as bigint) as records, \
         cast(sum({usage}.input_tokens) as bigint) as input_tokens, \
         cast(sum({usage}.output_tokens) as bigint) as output_tokens, \
         cast(sum({usage}.cache_creation_input_tokens) as bigint) as cache_creation_input_tokens, \
         cast(sum({usage}.cache_write_5m_tokens) as bigint) as cache_write_5m_tokens, \
         cast(sum({usage}.cache_write_1h_tokens) as bigint) as cache_write_1h_tokens, \
         cast(sum({usage}.cache_read_tokens) as bigint) as cache_read_tokens, \
         cast(sum({usage}.web_search_requests) as bigint) as web_search_requests, \
         cast(sum({fetch}) as bigint) as web_fetch_requests, \
         cast(sum({code}) as bigint) as code_execution_requests, {values} \
         from {src} where r.kind = 'message' and r.recorded_at >= $1 and r.recorded_at < $2 \
         and {account} and r.seq <= $4 \
         group by 1, 2, 3, 4, 5, 6, 7, 8{grouped}",
        values = value_columns(dims),
        grouped = (0..dims.len().min(MAX_DIMENSIONS))
            .map(|i| format!(", v{i}"))
            .collect::<String>(),
        day = crate::time::MICROS_PER_DAY
    )
}

/// The columns `v0` … `v3` of a grouped read: each dimension's value, null
/// where there are fewer dimensions.
pub(super) fn value_columns(dims: &[Dimension]) -> String {
    (0..MAX_DIMENSIONS)
        .map(|i| match dims.get(i) {
            Some(d) => format!("{} as v{i}", d.sql()),
            None => format!("cast(null as text) as v{i}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Records that may make their container billable in `[$1, $2)`, up to seq
/// `$3`, with each dimension's value (`v0` … `v3`).
pub(super) fn container_records_sql(dims: &[Dimension]) -> String {
    format!(
        "select r.container_id, r.seq, r.account, r.recorded_at, r.started_at, \
         r.web_tools_20260209, r.refusal, {} \
         from records r where r.container_id is not null and r.kind = 'message' \
         and (r.uses_code_execution or r.files_preloaded) and r.recorded_at >= $1 \
         and r.recorded_at < $2 and r.seq <= $3",
        value_columns(dims)
    )
}

/// Container roll-up states (migration 10), for SQLite's single writer
/// (`where …` follows).
pub(super) const CONTAINER_STATES: &str =
    "select container_id, account, first_at, first_seq, attribution, spans, exact from containers";

/// Completes `insert into containers (container_id, account) …`: claims the
/// unclaimed ids and returns every row's state (a no-op update, so existing
/// rows come back too, locked until commit). PostgreSQL's writers use it.
pub(super) const CONTAINER_CLAIM_RETURNING: &str = "on conflict (container_id) do update set \
    account = containers.account \
    returning container_id, account, first_at, first_seq, attribution, spans, exact";

pub(super) const CONTAINER_STATE_UPSERT: &str = "on conflict (container_id) do update set \
    first_at = excluded.first_at, first_seq = excluded.first_seq, \
    attribution = excluded.attribution, spans = excluded.spans, exact = excluded.exact";

/// Columns of a `containers` row as [`CONTAINER_STATE_UPSERT`] writes it.
pub(super) const CONTAINER_STATE_COLUMNS: &str =
    "container_id, account, first_at, first_seq, attribution, spans, exact";

pub(super) const CONTAINER_DAYS_ADD: &str = "on conflict (account, day, shard) do update set \
    containers = container_days.containers + excluded.containers, \
    execution_seconds = container_days.execution_seconds + excluded.execution_seconds, \
    short_containers = container_days.short_containers + excluded.short_containers, \
    short_seconds = container_days.short_seconds + excluded.short_seconds";

/// Records of inexact roll-up containers first used in `[$1, $2)`, columns
/// as [`container_records_sql`]'s. `cross join` keeps SQLite from scanning
/// records first; no bound on `seq` (PostgreSQL without statistics would
/// scan its whole index per container).
pub(super) fn inexact_container_records_sql(dims: &[Dimension]) -> String {
    format!(
        "select r.container_id, r.seq, r.account, r.recorded_at, r.started_at, \
         r.web_tools_20260209, r.refusal, {} \
         from containers c cross join records r \
         where c.exact = 0 and c.first_at >= $1 and c.first_at < $2 \
         and r.container_id is not null and r.container_id = c.container_id \
         and r.kind = 'message' and (r.uses_code_execution or r.files_preloaded)",
        value_columns(dims)
    )
}

/// Adds to the per-dimension day sums (`insert into container_dim_days …` first).
pub(super) const CONTAINER_DIM_DAYS_ADD: &str = "on conflict (dim, day, account, value, shard) do update set \
    containers = container_dim_days.containers + excluded.containers, \
    execution_seconds = container_dim_days.execution_seconds + excluded.execution_seconds, \
    short_containers = container_dim_days.short_containers + excluded.short_containers, \
    short_seconds = container_dim_days.short_seconds + excluded.short_seconds";

/// Columns of a `container_dim_days` row as [`CONTAINER_DIM_DAYS_ADD`] writes it.
pub(super) const CONTAINER_DIM_DAYS_COLUMNS: &str = "dim, day, account, value, shard, containers, \
    execution_seconds, short_containers, short_seconds";

/// One dimension's day sums (`$1` the dimension, `[$2, $3)` day numbers),
/// shards summed, with the value as `dim_value`.
pub(super) const CONTAINER_DIM_DAYS: &str = "select account, day, value as dim_value, \
    cast(sum(containers) as bigint) as containers, \
    cast(sum(execution_seconds) as bigint) as execution_seconds, \
    cast(sum(short_containers) as bigint) as short_containers, \
    cast(sum(short_seconds) as bigint) as short_seconds from container_dim_days \
    where dim = $1 and day >= $2 and day < $3 \
    group by account, day, value having sum(containers) <> 0 order by account, day, value";

/// The container roll-up's day sums in `[$1, $2)` (day numbers), shards summed.
pub(super) const CONTAINER_DAYS: &str = "select account, day, cast(sum(containers) as bigint) as containers, \
    cast(sum(execution_seconds) as bigint) as execution_seconds, \
    cast(sum(short_containers) as bigint) as short_containers, \
    cast(sum(short_seconds) as bigint) as short_seconds from container_days where day >= $1 and day < $2 \
    group by account, day having sum(containers) <> 0 order by account, day";

pub(super) const RECORD_COUNTS_ONE: &str = "select account, cast(count(*) as bigint) from records \
    where account = $1 and recorded_at >= $2 and recorded_at < $3 and seq <= $4 \
    group by account order by account";

pub(super) const RECORD_COUNTS_ALL: &str = "select account, cast(count(*) as bigint) from records \
    where cast($1 as text) is null and recorded_at >= $2 and recorded_at < $3 and seq <= $4 \
    group by account order by account";

pub(super) const FINALIZED_GET: &str = "select number, account, period, cutoff_seq, json, csv, html, pdf from invoices where account = $1 and period = $2";

/// Invoice numbers: the period and its gapless sequence, e.g.
/// `INV-2025-05-0042`. (Invoices finalized before version 19 of the schema
/// kept their ledger-wide six-digit numbers, such as `INV-2025-05-000042`;
/// four digits here keep the two apart.)
pub(super) fn invoice_number(period: &str, seq: i64) -> String {
    format!("INV-{period}-{seq:04}")
}

/// Usage from the roll-up (summing its shards): `$1` kind, `$2`/`$3` the UTC
/// day range, `$4` the account.
pub(super) fn rollup_sql(one_account: bool) -> String {
    rollup_read(one_account, false)
}

/// Usage by one dimension's values from `usage_dim_rollup`: as
/// [`rollup_sql`], `$5` the dimension, each group's value as `v0`.
pub(super) fn dim_rollup_sql(one_account: bool) -> String {
    rollup_read(one_account, true)
}

fn rollup_read(one_account: bool, by_dim: bool) -> String {
    let account = if one_account {
        "account = $4"
    } else {
        "cast($4 as text) is null"
    };
    let (table, dim, values, grouped) = if by_dim {
        (
            "usage_dim_rollup",
            " and dim = $5",
            ", value as v0",
            ", value",
        )
    } else {
        ("usage_rollup", "", "", "")
    };
    format!(
        "select account, nullif(model, '') as model, day, batch, fast, us, size_class as bucket, refusal, \
         cast(sum(records) as bigint) as records, cast(sum(input_tokens) as bigint) as input_tokens, \
         cast(sum(output_tokens) as bigint) as output_tokens, \
         cast(sum(cache_creation_input_tokens) as bigint) as cache_creation_input_tokens, \
         cast(sum(cache_write_5m_tokens) as bigint) as cache_write_5m_tokens, \
         cast(sum(cache_write_1h_tokens) as bigint) as cache_write_1h_tokens, \
         cast(sum(cache_read_tokens) as bigint) as cache_read_tokens, \
         cast(sum(web_search_requests) as bigint) as web_search_requests, \
         cast(sum(web_fetch_requests) as bigint) as web_fetch_requests, \
         cast(sum(code_execution_requests) as bigint) as code_execution_requests{values} \
         from {table} where kind = $1 and day >= $2 and day < $3 and {account}{dim} \
         group by account, model, day, batch, fast, us, size_class, refusal{grouped}"
    )
}

pub(super) const ROLLUP_COUNTS_ONE: &str = "select account, cast(sum(records) as bigint) from usage_rollup \
    where account = $1 and day >= $2 and day < $3 and kind in (0, 2) group by account order by account";

pub(super) const ROLLUP_COUNTS_ALL: &str = "select account, cast(sum(records) as bigint) from usage_rollup \
    where cast($1 as text) is null and day >= $2 and day < $3 and kind in (0, 2) group by account order by account";

pub(super) const HAS_RECORDS: &str = "select cast(1 as bigint) from usage_rollup \
    where account = $1 and kind in (0, 2) and records > 0 limit 1";

pub(super) const ACCOUNT_DAYS: &str = "select account, cast(day as bigint), cast(sum(records) as bigint) \
    from usage_rollup where kind in (0, 2) group by account, day order by account, day";

/// What follows a roll-up insert (into `usage_dim_rollup` when `by_dim`,
/// else `usage_rollup`): a row whose key exists adds its sums to it.
pub(super) fn rollup_upsert(by_dim: bool) -> String {
    let table = if by_dim {
        "usage_dim_rollup"
    } else {
        "usage_rollup"
    };
    let sums = std::iter::once("records")
        .chain(super::row::USAGE_COLUMNS)
        .map(|c| format!("{c} = {table}.{c} + excluded.{c}"))
        .chain(std::iter::once(format!(
            "max_seq = case when excluded.max_seq > {table}.max_seq then excluded.max_seq else {table}.max_seq end"
        )))
        .collect::<Vec<_>>()
        .join(", ");
    let dim = if by_dim { "dim, value, " } else { "" };
    format!(
        "on conflict (account, day, {dim}model, kind, batch, fast, us, size_class, refusal, shard) do update set {sums}"
    )
}

/// A roll-up table as [`fold_shards_sql`] folds it.
pub(super) struct RollupTable {
    pub name: &'static str,
    /// Key columns other than `shard`.
    pub key: Vec<&'static str>,
    pub summed: Vec<&'static str>,
    /// Columns kept as their maximum.
    pub maxed: Vec<&'static str>,
}

/// The roll-up tables (each keyed by writer shard on PostgreSQL).
pub(super) fn rollup_tables() -> Vec<RollupTable> {
    let rate_key = vec![
        "account",
        "day",
        "model",
        "kind",
        "batch",
        "fast",
        "us",
        "size_class",
        "refusal",
    ];
    let mut usage: Vec<&str> = vec!["records"];
    usage.extend(super::row::USAGE_COLUMNS);
    let mut by_dim = vec!["dim", "value"];
    by_dim.extend(rate_key.iter().copied());
    let containers = vec![
        "containers",
        "execution_seconds",
        "short_containers",
        "short_seconds",
    ];
    let table = |name, key, summed, maxed| RollupTable {
        name,
        key,
        summed,
        maxed,
    };
    vec![
        table("usage_rollup", rate_key, usage.clone(), vec!["max_seq"]),
        table("usage_dim_rollup", by_dim, usage, vec!["max_seq"]),
        table(
            "container_days",
            vec!["account", "day"],
            containers.clone(),
            vec![],
        ),
        table(
            "container_dim_days",
            vec!["dim", "day", "account", "value"],
            containers,
            vec![],
        ),
    ]
}

/// Shard of the rows [`fold_shards_sql`] writes; writers use 0 and up.
pub(super) const FOLDED_SHARD: i64 = -1;

/// PostgreSQL: move the writer shards' rows of a roll-up table on day `$1`
/// into one row per key (shard [`FOLDED_SHARD`]). Rows a writer holds are
/// skipped (folded another time), so the fold never waits for a writer and
/// cannot deadlock with one; each day's rows are locked only for one short
/// statement. The sums come from the rows the delete returns.
pub(super) fn fold_shards_sql(t: &RollupTable) -> String {
    let (table, summed, maxed) = (t.name, &t.summed, &t.maxed);
    let key_list = t.key.join(", ");
    let totals: Vec<String> = summed
        .iter()
        .map(|c| format!("cast(sum({c}) as bigint)"))
        .chain(maxed.iter().map(|c| format!("max({c})")))
        .collect();
    let updates: Vec<String> = summed
        .iter()
        .map(|c| format!("{c} = {table}.{c} + excluded.{c}"))
        .chain(
            maxed
                .iter()
                .map(|c| format!("{c} = greatest({table}.{c}, excluded.{c})")),
        )
        .collect();
    let columns: Vec<&str> = summed.iter().chain(maxed).copied().collect();
    format!(
        "with picked as (select ctid from {table} where day = $1 and shard <> {FOLDED_SHARD} \
         for update skip locked), \
         folded as (delete from {table} where ctid = any(array(select ctid from picked)) returning *) \
         insert into {table} ({key_list}, shard, {columns}) \
         select {key_list}, {FOLDED_SHARD}, {totals} from folded group by {key_list} \
         on conflict ({key_list}, shard) do update set {updates}",
        columns = columns.join(", "),
        totals = totals.join(", "),
        updates = updates.join(", ")
    )
}
