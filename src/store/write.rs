//! The batch write algorithm, shared by both backends.
//!
//! Inside one transaction:
//! 1. Records are split into rounds: the first occurrence of each key in the
//!    batch goes in round 0, the second in round 1, … (rounds past 0 are rare:
//!    they only exist when a batch repeats an id). Each round is checked
//!    against the database *including* the rounds before it, so an in-batch
//!    repeat is judged exactly like a repeat across batches.
//! 2. Per round: read the owners of the containers the round names (no lock,
//!    so a writer never waits here for another); a record whose container
//!    belongs to another account — or, for a container nobody owns yet, to
//!    another account than the batch's earliest line naming it — is a conflict.
//! 3. Insert the rest with `on conflict (record_key) do nothing`. A key that
//!    was not inserted already exists: same account and same content hash is a
//!    duplicate, anything else a conflict.
//! 4. Bodies and iterations of the inserted records (most of the bytes).
//! 5. Claim and lock the containers of the inserted records in one upsert
//!    that returns their roll-up state. Locks are taken here, late, so two
//!    transactions that share a container overlap for all their other work.
//!    Should another writer have claimed a container for another account
//!    since step 2, the records naming it are deleted again and become
//!    conflicts.
//! 6. The usage roll-up of the records that stay; the containers' new states
//!    and their day sums; then quarantine of conflicts and of the batch's
//!    rejected lines.
//!
//! Keys are processed in sorted order so that concurrent transactions on
//! PostgreSQL take row locks in the same order and cannot deadlock.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;

use super::containers::{
    self, ContainerDayDelta, ContainerDayKey, ContainerDeltas, ContainerDimKey, ContainerState,
};
use super::row::{self, Returned, TableRow};
use super::{RecordOutcome, Result, RollupKey, WriteBatch, WriteOutcome, size_class};
use crate::record::{NewRecord, NewRejection, RecordKind, Refusal, Usage, conflict_error};
use crate::time::Micros;

/// The primitive operations a backend's transaction provides.
#[async_trait]
pub(crate) trait WriteTx: Send {
    /// Rows per insert statement (a statement's bind parameters are bounded).
    const ROWS_PER_STATEMENT: usize;
    /// Owners of those of these containers that are claimed.
    async fn container_owners(&mut self, ids: &[&str]) -> Result<HashMap<String, String>>;
    /// Claim `(container_id, account)` where unclaimed, lock every one of them
    /// until commit, and return their states (ids sorted, each once).
    async fn lock_containers(
        &mut self,
        claims: &[(&str, &str)],
    ) -> Result<BTreeMap<String, ContainerState>>;
    /// Delete records inserted earlier in this transaction, with their
    /// bodies and iterations.
    async fn delete_records(&mut self, seqs: &[i64]) -> Result<()>;
    /// `(account, content_hash)` of the stored record for each key.
    async fn existing(&mut self, keys: &[&str]) -> Result<HashMap<String, (String, String)>>;
    /// Insert `rows` (at least one, at most [`Self::ROWS_PER_STATEMENT`]) into `table` in
    /// one statement ending in `then` (an `on conflict` clause); return the
    /// `(text, integer)` pairs its `returning` clause yields, if it has one.
    async fn insert(&mut self, table: &str, rows: &[TableRow<'_>], then: &str) -> Result<Returned>;
    /// The roll-up shard this transaction adds to (concurrent writers add to
    /// different rows instead of queueing on one).
    fn rollup_shard(&self) -> i64;
    /// Write back container states (ids sorted, each once) and add to the
    /// per-account, per-day container sums (keys sorted, each once).
    async fn save_containers(
        &mut self,
        states: &[(&str, &ContainerState)],
        days: &[(ContainerDayKey, ContainerDayDelta)],
        dims: &[(ContainerDimKey, ContainerDayDelta)],
    ) -> Result<()>;
}

pub(crate) async fn write_batch<T: WriteTx>(
    tx: &mut T,
    batch: &WriteBatch,
    now: Micros,
) -> Result<WriteOutcome> {
    let mut outcomes: Vec<Option<RecordOutcome>> = vec![None; batch.records.len()];
    let mut conflicts: Vec<(usize, String)> = Vec::new();

    for round in rounds(&batch.records) {
        write_round(
            tx,
            &batch.records,
            &round,
            now,
            &mut outcomes,
            &mut conflicts,
        )
        .await?;
    }

    for (index, message) in conflicts {
        if let Some(record) = batch.records.get(index) {
            let rejection = NewRejection {
                raw: record.raw.as_bytes().to_vec(),
                error: conflict_error(message.clone(), &record.origin),
                origin: record.origin.clone(),
                defaults: Default::default(),
            };
            let rejected_id = quarantine(tx, &rejection, now).await?;
            if let Some(slot) = outcomes.get_mut(index) {
                *slot = Some(RecordOutcome::Conflict {
                    message,
                    rejected_id,
                });
            }
        }
    }

    let mut rejected_ids = Vec::with_capacity(batch.rejections.len());
    for rejection in &batch.rejections {
        rejected_ids.push(quarantine(tx, rejection, now).await?);
    }

    Ok(WriteOutcome {
        records: outcomes
            .into_iter()
            .map(|o| o.unwrap_or(RecordOutcome::Duplicate))
            .collect(),
        rejections: rejected_ids,
    })
}

/// Indexes of the batch grouped by occurrence of their key, each round sorted by key.
fn rounds(records: &[NewRecord]) -> Vec<Vec<usize>> {
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(records.len());
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let n = seen.entry(r.key.as_str()).or_insert(0);
        if rounds.len() <= *n {
            rounds.push(Vec::new());
        }
        if let Some(round) = rounds.get_mut(*n) {
            round.push(i);
        }
        *n += 1;
    }
    for round in &mut rounds {
        round.sort_by(|&a, &b| key_of(records, a).cmp(key_of(records, b)));
    }
    rounds
}

fn key_of(records: &[NewRecord], i: usize) -> &str {
    records.get(i).map_or("", |r| r.key.as_str())
}

async fn write_round<T: WriteTx>(
    tx: &mut T,
    records: &[NewRecord],
    round: &[usize],
    now: Micros,
    outcomes: &mut [Option<RecordOutcome>],
    conflicts: &mut Vec<(usize, String)>,
) -> Result<()> {
    let get = |i: usize| records.get(i);

    // Who owns each container: its claim, else the round's first record naming it.
    let mut ids: Vec<&str> = round
        .iter()
        .filter_map(|&i| get(i).and_then(|r| r.container_id.as_deref()))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let claimed = if ids.is_empty() {
        HashMap::new()
    } else {
        tx.container_owners(&ids).await?
    };
    let mut owners: HashMap<&str, &str> = claimed
        .iter()
        .map(|(c, a)| (c.as_str(), a.as_str()))
        .collect();
    // Unclaimed: the account of the batch's earliest line naming it (the
    // round is sorted by key; ownership goes by the order lines came in).
    let mut in_arrival_order = round.to_vec();
    in_arrival_order.sort_unstable();
    for &i in &in_arrival_order {
        if let Some(r) = get(i)
            && let Some(c) = r.container_id.as_deref()
        {
            owners.entry(c).or_insert(r.account.as_str());
        }
    }
    let mut candidates: Vec<usize> = Vec::with_capacity(round.len());
    for &i in round {
        let Some(r) = get(i) else { continue };
        let owner = r
            .container_id
            .as_deref()
            .and_then(|c| owners.get(c).map(|owner| (c, *owner)));
        match owner {
            Some((c, owner)) if owner != r.account => {
                conflicts.push((i, container_conflict(c, owner)))
            }
            _ => candidates.push(i),
        }
    }

    let rows: Vec<&NewRecord> = candidates.iter().filter_map(|&i| get(i)).collect();
    let inserted: HashMap<String, i64> = if rows.is_empty() {
        HashMap::new()
    } else {
        let tags: Vec<Option<String>> = rows.iter().map(|r| r.attribution.tags_json()).collect();
        let records: Vec<_> = rows
            .iter()
            .zip(&tags)
            .map(|(r, tags)| row::record_row(r, tags.as_deref(), now))
            .collect();
        insert_all(tx, "records", &records, row::RECORDS_INSERTED)
            .await?
            .into_iter()
            .collect()
    };

    let missing: Vec<&str> = rows
        .iter()
        .filter(|r| !inserted.contains_key(&r.key))
        .map(|r| r.key.as_str())
        .collect();
    let existing = if missing.is_empty() {
        HashMap::new()
    } else {
        tx.existing(&missing).await?
    };

    // The inserted records' bodies and iterations, before any lock: the
    // bulk of the bytes goes in while another writer may hold a container.
    let mut bodies = Vec::with_capacity(inserted.len());
    let mut iterations = Vec::new();
    let mut tags = Vec::new();
    for r in &rows {
        if let Some(&seq) = inserted.get(&r.key) {
            bodies.push(row::body_row(seq, &r.raw));
            for (pos, it) in r.iterations.iter().enumerate() {
                iterations.push(row::iteration_row(seq, pos as i64, it));
            }
            for (key, value) in &r.attribution.tags {
                tags.push(row::tag_row(seq, key, value));
            }
        }
    }
    insert_all(tx, "record_bodies", &bodies, "").await?;
    insert_all(tx, "record_iterations", &iterations, "").await?;
    insert_all(tx, "record_tags", &tags, "").await?;

    // Lock the containers of the inserted records; a claim another writer
    // made meanwhile for another account undoes the records naming it.
    let mut claims: BTreeMap<&str, &str> = BTreeMap::new();
    for &i in &in_arrival_order {
        if let Some(r) = get(i)
            && inserted.contains_key(&r.key)
            && let Some(c) = r.container_id.as_deref()
        {
            claims.entry(c).or_insert(r.account.as_str());
        }
    }
    let claims: Vec<(&str, &str)> = claims.into_iter().collect();
    let mut states = if claims.is_empty() {
        BTreeMap::new()
    } else {
        tx.lock_containers(&claims).await?
    };
    let mut undone: Vec<i64> = Vec::new();
    let mut kept: Vec<usize> = Vec::with_capacity(candidates.len());
    for &i in &candidates {
        let Some(r) = get(i) else { continue };
        let lost = r
            .container_id
            .as_deref()
            .and_then(|c| states.get(c).map(|s| (c, s.account.as_str())))
            .filter(|(_, owner)| *owner != r.account);
        match (lost, inserted.get(&r.key)) {
            (Some((c, owner)), Some(&seq)) => {
                undone.push(seq);
                conflicts.push((i, container_conflict(c, owner)));
            }
            _ => kept.push(i),
        }
    }
    if !undone.is_empty() {
        tx.delete_records(&undone).await?;
    }

    let mut rollup: BTreeMap<RollupKey, (Usage, i64, i64)> = BTreeMap::new();
    let mut container_time: Vec<(i64, &NewRecord)> = Vec::new();
    for &i in &kept {
        let Some(r) = get(i) else { continue };
        let outcome = if let Some(&seq) = inserted.get(&r.key) {
            if containers::counts_toward_container(r) {
                container_time.push((seq, r));
            }
            add_to_rollup(&mut rollup, r, seq);
            RecordOutcome::Recorded
        } else {
            let conflict = match existing.get(&r.key) {
                Some((account, _)) if account != &r.account => {
                    Some(format!("under account {account:?}"))
                }
                Some((_, hash)) if hash != &r.content_hash => {
                    Some("with a different response body".to_owned())
                }
                _ => None,
            };
            if let Some(how) = conflict {
                let message = format!("response id {} is already recorded {how}", r.key);
                conflicts.push((i, message));
                continue;
            }
            RecordOutcome::Duplicate
        };
        if let Some(slot) = outcomes.get_mut(i) {
            *slot = Some(outcome);
        }
    }

    let shard = tx.rollup_shard();
    let (sums, by_dim): (Vec<_>, Vec<_>) = rollup
        .iter()
        .map(|(k, (u, n, seq))| row::rollup_row(k, u, *n, *seq, shard))
        .partition(|row| row.iter().all(|(column, _)| *column != "dim"));
    insert_all(tx, "usage_rollup", &sums, &super::sql::rollup_upsert(false)).await?;
    insert_all(
        tx,
        "usage_dim_rollup",
        &by_dim,
        &super::sql::rollup_upsert(true),
    )
    .await?;
    if !container_time.is_empty() {
        add_to_container_rollup(tx, &mut states, &container_time).await?;
    }
    Ok(())
}

/// Insert `rows` a statement's worth at a time; what the statements return.
async fn insert_all<T: WriteTx>(
    tx: &mut T,
    table: &str,
    rows: &[TableRow<'_>],
    then: &str,
) -> Result<Returned> {
    let mut returned = Vec::new();
    for chunk in rows.chunks(T::ROWS_PER_STATEMENT) {
        returned.extend(tx.insert(table, chunk, then).await?);
    }
    Ok(returned)
}

/// Store a rejected line (or count another sighting of the same bytes); its id.
async fn quarantine<T: WriteTx>(tx: &mut T, r: &NewRejection, now: Micros) -> Result<i64> {
    let hash = super::sql::rejection_hash(r);
    let rows = [row::rejection_row(r, &hash, now)];
    let returned = tx
        .insert("rejected", &rows, super::sql::QUARANTINE_UPSERT)
        .await?;
    returned
        .first()
        .map(|(_, id)| *id)
        .ok_or(super::StoreError::Database(sqlx::Error::RowNotFound))
}

fn container_conflict(container: &str, owner: &str) -> String {
    format!(
        "container {container} already belongs to account {owner:?}; a container cannot be billed to two accounts"
    )
}

/// Fold newly inserted container records (with their seqs) into the
/// container roll-up; `states` holds (at least) the state of each of their containers.
async fn add_to_container_rollup<T: WriteTx>(
    tx: &mut T,
    states: &mut BTreeMap<String, ContainerState>,
    records: &[(i64, &NewRecord)],
) -> Result<()> {
    let mut ids: Vec<&str> = records
        .iter()
        .filter_map(|(_, r)| r.container_id.as_deref())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut deltas = ContainerDeltas::default();
    containers::apply(states, records.iter().copied(), &mut deltas);
    let changed: Vec<(&str, &ContainerState)> = ids
        .iter()
        .filter_map(|id| states.get(*id).map(|s| (*id, s)))
        .collect();
    let (days, dims) = deltas.nonzero();
    tx.save_containers(&changed, &days, &dims).await
}

/// A new record's share of the usage roll-up.
fn add_to_rollup(rollup: &mut BTreeMap<RollupKey, (Usage, i64, i64)>, r: &NewRecord, seq: i64) {
    let day = crate::time::day_number(r.recorded_at);
    let flag = |b: bool| i64::from(b);
    let batch = flag(r.batch);
    let fast = flag(r.speed.as_deref() == Some("fast"));
    let us = flag(r.inference_geo.as_deref() == Some("us"));
    let total = |u: &Usage| u.input_tokens + u.cache_creation_input_tokens + u.cache_read_tokens;
    let mut add = |key: RollupKey, u: &Usage| {
        let entry = rollup.entry(key).or_default();
        entry.0 += u;
        entry.1 += 1;
        entry.2 = entry.2.max(seq);
    };
    if r.kind != RecordKind::Message {
        let key = RollupKey {
            account: r.account.clone(),
            day,
            model: String::new(),
            kind: 2,
            batch: 0,
            fast: 0,
            us: 0,
            size_class: 0,
            refusal: String::new(),
            dim: String::new(),
            value: String::new(),
        };
        add(key, &Usage::default());
        return;
    }
    let model = r.model.clone().unwrap_or_default();
    let refusal = Refusal::column(r.refusal.as_ref());
    let dims = r.attribution.pairs();
    // The key in usage_rollup, then once per dimension in usage_dim_rollup.
    let mut add_all = |key: RollupKey, u: &Usage| {
        for (dim, value) in &dims {
            let by_dim = RollupKey {
                dim: dim.clone(),
                value: (*value).to_owned(),
                ..key.clone()
            };
            add(by_dim, u);
        }
        add(key, u);
    };
    add_all(
        RollupKey {
            account: r.account.clone(),
            day,
            model: model.clone(),
            kind: 0,
            batch,
            fast,
            us,
            size_class: size_class(total(&r.usage)),
            refusal: refusal.to_owned(),
            dim: String::new(),
            value: String::new(),
        },
        &r.usage,
    );
    for it in &r.iterations {
        let u = Usage {
            web_fetch_requests: 0,
            code_execution_requests: 0,
            ..it.usage.clone()
        };
        add_all(
            RollupKey {
                account: r.account.clone(),
                day,
                model: it.model.clone().unwrap_or_else(|| model.clone()),
                kind: 1,
                batch,
                fast,
                us,
                size_class: size_class(total(&u)),
                refusal: refusal.to_owned(),
                dim: String::new(),
                value: String::new(),
            },
            &u,
        );
    }
}
