//! Synthetic but realistic usage records, for benchmarks and trials
//! (`tally gen-usage`). Deterministic for a given seed.
//!
//! The mix: a dozen accounts, current and retired models (each only on dates
//! the shipped price book prices it), prompt caching with and without the TTL
//! breakdown, web searches, code execution in containers that are sometimes
//! reused, file preloads, batch results (mostly succeeded), streamed
//! responses, and the odd advisor iteration.
//!
//! Three profiles: [`Profile::Default`] (12 % of records in containers),
//! [`Profile::Demo`] (`tally demo`'s: a few more containers, and refusals) and
//! [`Profile::CodeExecution`] (about a third in containers, most containers
//! reused by several requests, one container in six with files preloaded).
//! Records come in time order unless shuffled ([`Options::shuffle`]: a
//! backfill of several log files at once).

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::{Value, json};

use crate::pricing::PriceBook;

const MODELS: [&str; 6] = [
    "claude-sonnet-4-20250514",
    "claude-opus-4-20250514",
    "claude-haiku-4-5-20251001",
    "claude-sonnet-4-6",
    "claude-opus-4-6",
    "claude-sonnet-5",
];

const TEXT: &str = "Here is a summary of the quarterly figures you asked for. Revenue grew in every region, \
    with the strongest gains in the enterprise segment; churn fell slightly and the gross margin held steady. \
    I have listed the three drivers below together with the assumptions behind each estimate.";

/// SplitMix64: a tiny, fast, well-distributed generator; plenty for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What kind of traffic to generate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// A general mix: 12 % of records run code in containers.
    #[default]
    Default,
    /// Code-execution-heavy traffic: about a third of records in containers,
    /// most containers reused, files preloaded in some.
    CodeExecution,
    /// `tally demo`'s mix: the default one with a few more containers and
    /// file preloads, and the odd refusal before any output.
    Demo,
}

/// How to generate a file.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub profile: Profile,
    /// Write the records in random order (the whole file is held in memory
    /// to shuffle it; without this, generation streams in constant memory).
    pub shuffle: bool,
}

/// Write `n` NDJSON records of the default mix, in time order.
pub fn write_ndjson(out: impl Write, n: u64, seed: u64) -> std::io::Result<()> {
    write_ndjson_with(out, n, seed, Options::default())
}

/// Write `n` NDJSON records.
pub fn write_ndjson_with(
    mut out: impl Write,
    n: u64,
    seed: u64,
    options: Options,
) -> std::io::Result<()> {
    let lines = Generator::new(n, seed, 12).profile(options.profile);
    if options.shuffle {
        let mut all: Vec<String> = lines.map(|l| l.to_string()).collect();
        let mut rng = Rng(seed ^ 0x5eed_5eed);
        // Fisher–Yates.
        for i in (1..all.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            all.swap(i, j);
        }
        for line in all {
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")?;
        }
    } else {
        for line in lines {
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()
}

/// `n` records spread evenly over the 28 days from 2026-03-01 (or the span
/// given to [`Generator::over`]), across `accounts` accounts, as JSON values.
pub struct Generator {
    rng: Rng,
    i: u64,
    n: u64,
    seed: u64,
    accounts: u64,
    base: i64,
    /// Seconds the records are spread over.
    span: i64,
    /// Named accounts and their weights (the share of records each gets);
    /// empty: `team-00`, `team-01`, … equally.
    named: Vec<(String, u64)>,
    profile: Profile,
    /// Recently used containers per account, newest last.
    containers: BTreeMap<String, Vec<String>>,
    /// The models the shipped price book prices, per UTC day number.
    priced: BTreeMap<i64, Vec<&'static str>>,
}

impl Generator {
    pub fn new(n: u64, seed: u64, accounts: u64) -> Self {
        let base = chrono::DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
            .map(|t| t.timestamp())
            .unwrap_or_default();
        Generator {
            rng: Rng(seed),
            i: 0,
            n,
            seed,
            accounts: accounts.max(1),
            base,
            span: 2_419_000,
            named: Vec::new(),
            profile: Profile::Default,
            containers: BTreeMap::new(),
            priced: BTreeMap::new(),
        }
    }

    pub fn profile(mut self, profile: Profile) -> Self {
        self.profile = profile;
        self
    }

    /// Spread the records over `[from, to)` (seconds since the epoch): the
    /// first at `from`, the last in the minute before `to`.
    pub fn over(mut self, from: i64, to: i64) -> Self {
        let room = (to - from - 60).max(1);
        let n = i64::try_from(self.n).unwrap_or(i64::MAX).max(1);
        self.base = from;
        // Record i sits at i × span / n: the last, n − 1, at `room`.
        self.span = if n > 1 {
            room.saturating_mul(n) / (n - 1)
        } else {
            room
        };
        self
    }

    /// Accounts by name, each getting records in proportion to its weight.
    pub fn accounts_named(mut self, named: &[(&str, u64)]) -> Self {
        self.named = named
            .iter()
            .map(|(n, w)| ((*n).to_owned(), (*w).max(1)))
            .collect();
        self.accounts = self.named.len().max(1) as u64;
        self
    }

    /// The account of the next record, and its number (which attribution
    /// derives workspaces and keys from).
    fn pick_account(&mut self) -> (String, u64) {
        if self.named.is_empty() {
            let number = self.rng.below(self.accounts);
            return (format!("team-{number:02}"), number);
        }
        let total: u64 = self.named.iter().map(|(_, w)| w).sum();
        let mut r = self.rng.below(total);
        for (number, (name, weight)) in self.named.iter().enumerate() {
            if r < *weight {
                return (name.clone(), number as u64);
            }
            r -= weight;
        }
        (self.named[0].0.clone(), 0)
    }

    /// The models priced on the day of `t` (seconds), by the shipped book.
    fn models_on(&mut self, t: i64) -> &[&'static str] {
        let day = t.div_euclid(86_400);
        self.priced.entry(day).or_insert_with(|| {
            let book = PriceBook::shipped();
            let date = chrono::DateTime::from_timestamp(day * 86_400, 0)
                .map(|d| d.date_naive())
                .unwrap_or_default();
            let version = book.version_at(date);
            MODELS
                .iter()
                .copied()
                .filter(|m| version.is_some_and(|v| v.model(m).is_some()))
                .collect()
        })
    }
}

impl Iterator for Generator {
    type Item = Value;

    fn next(&mut self) -> Option<Value> {
        if self.i >= self.n {
            return None;
        }
        let offset = i64::try_from(
            u128::from(self.i) * u128::from(self.span.unsigned_abs()) / u128::from(self.n),
        )
        .unwrap_or(0);
        // Spread over the span, in order, with jitter.
        let recorded = self.base + offset + self.rng.below(60) as i64;
        let (account, number) = self.pick_account();
        let pick = self.rng.below(1 << 16);
        let models = self.models_on(recorded);
        let model = models
            .get((pick % models.len().max(1) as u64) as usize)
            .copied()
            .unwrap_or("claude-sonnet-4-6");
        let line = record(
            &mut self.rng,
            Slot {
                i: self.i,
                seed: self.seed,
                recorded,
                account,
                number,
                model,
                profile: self.profile,
            },
            &mut self.containers,
        );
        self.i += 1;
        Some(line)
    }
}

/// Where and when one record is generated.
struct Slot {
    i: u64,
    seed: u64,
    recorded: i64,
    account: String,
    /// The account's number (workspaces and keys are derived from it).
    number: u64,
    model: &'static str,
    profile: Profile,
}

/// Pick a container for a code-execution record: a recent one of the same
/// account (reused), or a new one.
fn pick_container(
    rng: &mut Rng,
    slot: &Slot,
    containers: &mut BTreeMap<String, Vec<String>>,
) -> String {
    let (reuse_percent, keep) = match slot.profile {
        Profile::Default => (33, 1),
        Profile::CodeExecution | Profile::Demo => (70, 4),
    };
    let recent = containers.entry(slot.account.clone()).or_default();
    if !recent.is_empty() && rng.chance(reuse_percent) {
        let pick = rng.below(recent.len() as u64) as usize;
        if let Some(c) = recent.get(pick) {
            return c.clone();
        }
    }
    let cid = format!("container_{:04x}{:016}", slot.seed, slot.i);
    recent.push(cid.clone());
    if recent.len() > keep {
        recent.remove(0);
    }
    cid
}

/// Projects and teams the generated tags name.
const PROJECTS: [&str; 8] = [
    "search",
    "assistant",
    "summaries",
    "support",
    "analytics",
    "agents",
    "docs",
    "labs",
];
const TEAMS: [&str; 4] = ["core", "growth", "platform", "research"];

/// Attribution (docs/input.md) for record `i`, from a generator of its own so the
/// rest of the record is what it would be without it: each account's
/// workspace (two for every third account), an API key id per account and
/// workspace, a user on half the records, and tags `project` and `team` on
/// nine records in ten.
fn attribution(seed: u64, i: u64, account: &str, number: u64) -> serde_json::Map<String, Value> {
    let mut rng = Rng(seed.rotate_left(17) ^ i.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    let workspace = if number.is_multiple_of(3) && rng.chance(40) {
        2
    } else {
        1
    };
    let mut out = serde_json::Map::new();
    out.insert(
        "workspace".into(),
        format!("wrkspc_{account}_{workspace}").into(),
    );
    out.insert(
        "api_key_id".into(),
        format!("key_{account}_{workspace}").into(),
    );
    if rng.chance(50) {
        out.insert("user".into(), format!("user-{:03}", rng.below(400)).into());
    }
    if rng.chance(90) {
        let project = PROJECTS[rng.below(PROJECTS.len() as u64) as usize];
        let team = TEAMS[rng.below(TEAMS.len() as u64) as usize];
        out.insert("tags".into(), json!({"project": project, "team": team}));
    }
    out
}

fn record(rng: &mut Rng, slot: Slot, containers: &mut BTreeMap<String, Vec<String>>) -> Value {
    let mut line = record_without_attribution(rng, &slot, containers);
    if let Value::Object(fields) = &mut line {
        fields.extend(attribution(slot.seed, slot.i, &slot.account, slot.number));
    }
    line
}

fn record_without_attribution(
    rng: &mut Rng,
    slot: &Slot,
    containers: &mut BTreeMap<String, Vec<String>>,
) -> Value {
    let Slot {
        i,
        seed,
        recorded,
        ref account,
        model,
        profile,
        ..
    } = *slot;
    let account = account.clone();
    let started = recorded - 1 - rng.below(40) as i64;
    let ts = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(|d| d.to_rfc3339())
            .unwrap_or_default()
    };
    let id = format!("msg_{seed:04x}{i:020}");

    let mut usage = json!({
        "input_tokens": 200 + rng.below(4000),
        "output_tokens": 50 + rng.below(1500),
        "cache_read_input_tokens": if rng.chance(40) { rng.below(20000) } else { 0 },
        "service_tier": "standard",
    });
    if rng.chance(30) {
        let w5 = rng.below(3000);
        let w1 = if rng.chance(30) { rng.below(2000) } else { 0 };
        usage["cache_creation_input_tokens"] = json!(w5 + w1);
        if rng.chance(70) {
            usage["cache_creation"] =
                json!({"ephemeral_5m_input_tokens": w5, "ephemeral_1h_input_tokens": w1});
        }
    }
    if rng.chance(10) {
        usage["server_tool_use"] = json!({"web_search_requests": 1 + rng.below(3)});
    }
    if rng.chance(2) {
        usage["iterations"] = json!([
            {"type": "message", "input_tokens": usage["input_tokens"], "output_tokens": usage["output_tokens"]},
            {"type": "advisor_message", "model": "claude-opus-4-6", "input_tokens": 900, "output_tokens": 120}
        ]);
    }

    let mut content = vec![json!({"type": "text", "text": TEXT})];
    let mut response_container = Value::Null;
    let mut request = Value::Null;
    let (code_percent, preload_percent) = match profile {
        Profile::Default => (12, 2),
        Profile::CodeExecution => (30, 6),
        Profile::Demo => (15, 4),
    };
    if rng.chance(code_percent) {
        // Code execution, often in a recent container of the same account.
        let cid = pick_container(rng, slot, containers);
        content.push(json!({"type": "server_tool_use", "id": format!("srvtoolu_{i}"), "name": "code_execution",
            "input": {"code": "import pandas as pd\nprint(pd.read_csv('q3.csv').describe())"}}));
        content.push(json!({"type": "code_execution_tool_result", "tool_use_id": format!("srvtoolu_{i}"),
            "content": {"type": "code_execution_result", "stdout": "count  120\nmean   4.2\n", "stderr": "", "return_code": 0}}));
        response_container = json!({"id": cid, "expires_at": ts(recorded + 3600)});
    } else if rng.chance(preload_percent) {
        // Files preloaded into a container; the tool never runs.
        let cid = format!("container_{seed:04x}{i:016}");
        response_container = json!({"id": cid, "expires_at": ts(recorded + 3600)});
        request = json!({"model": model, "max_tokens": 1024, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Summarise the attached file."},
            {"type": "container_upload", "file_id": format!("file_{i}")}]}],
            "tools": [{"type": "code_execution_20250825", "name": "code_execution"}]});
    }

    let mut message = json!({
        "id": id, "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": "end_turn", "stop_sequence": null,
        "usage": usage, "container": response_container,
    });
    if profile == Profile::Demo && response_container.is_null() && rng.chance(2) {
        // A refusal before any output: whether it is charged depends on
        // the day's refusal policy and the category.
        let category = ["cyber", "bio", "other"][rng.below(3) as usize];
        message["content"] = json!([]);
        message["stop_reason"] = json!("refusal");
        message["stop_details"] = json!({"type": "refusal", "category": category});
        message["usage"]["output_tokens"] = json!(0);
    }

    let roll = rng.below(100);
    if roll < 8 {
        // A Message Batches result line; a few did not succeed.
        let custom_id = format!("req-{seed}-{i}");
        let result = match rng.below(20) {
            0 => {
                json!({"type": "errored", "error": {"type": "invalid_request_error", "message": "prompt is too long"}})
            }
            1 => json!({"type": "expired"}),
            _ => json!({"type": "succeeded", "message": message}),
        };
        json!({"account": account, "recorded_at": ts(recorded), "custom_id": custom_id, "result": result})
    } else if roll < 13 {
        // A streamed response.
        let mut start = message.clone();
        start["content"] = json!([]);
        start["usage"] = json!({"input_tokens": usage["input_tokens"], "output_tokens": 1,
            "cache_read_input_tokens": usage["cache_read_input_tokens"]});
        let events = json!([
            {"type": "message_start", "message": start},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": TEXT}},
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null, "container": response_container},
             "usage": {"output_tokens": usage["output_tokens"], "input_tokens": usage["input_tokens"]}},
            {"type": "message_stop"}
        ]);
        json!({"account": account, "recorded_at": ts(recorded), "started_at": ts(started), "events": events})
    } else {
        let mut env = json!({"account": account, "recorded_at": ts(recorded), "started_at": ts(started), "response": message});
        if !request.is_null() {
            env["request"] = request;
        }
        env
    }
}
