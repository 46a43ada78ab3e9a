//! Synthetic but realistic usage records, for benchmarks and trials
//! (`tally gen-usage`). Deterministic for a given seed.
//!
//! The mix: a dozen accounts, current and retired models, prompt caching with
//! and without the TTL breakdown, web searches, code execution in containers
//! that are sometimes reused, file preloads, batch results (mostly succeeded),
//! streamed responses, and the odd advisor iteration.

use std::io::Write;

use serde_json::{Value, json};

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

/// Write `n` NDJSON records.
pub fn write_ndjson(mut out: impl Write, n: u64, seed: u64) -> std::io::Result<()> {
    for line in Generator::new(n, seed, 12) {
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// `n` records spread evenly over the 28 days from 2026-03-01, across
/// `accounts` accounts, as JSON values.
pub struct Generator {
    rng: Rng,
    i: u64,
    n: u64,
    seed: u64,
    accounts: u64,
    base: i64,
    container: Option<(String, String)>,
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
            container: None,
        }
    }
}

impl Iterator for Generator {
    type Item = Value;

    fn next(&mut self) -> Option<Value> {
        if self.i >= self.n {
            return None;
        }
        let offset =
            i64::try_from(u128::from(self.i) * 2_419_000 / u128::from(self.n)).unwrap_or(0);
        let line = record(
            &mut self.rng,
            self.i,
            self.seed,
            self.base + offset,
            self.accounts,
            &mut self.container,
        );
        self.i += 1;
        Some(line)
    }
}

fn record(
    rng: &mut Rng,
    i: u64,
    seed: u64,
    base: i64,
    accounts: u64,
    container: &mut Option<(String, String)>,
) -> Value {
    let account = format!("team-{:02}", rng.below(accounts));
    let model = MODELS
        .get(rng.below(MODELS.len() as u64) as usize)
        .copied()
        .unwrap_or("claude-sonnet-4-6");
    // Spread over 28 days, in order, with jitter.
    let recorded = base + rng.below(60) as i64;
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
    if rng.chance(12) {
        // Code execution; a third of the time in the previous container of the same account.
        let reuse = container
            .as_ref()
            .filter(|(a, _)| *a == account && rng.chance(33))
            .map(|(_, c)| c.clone());
        let cid = reuse.unwrap_or_else(|| format!("container_{seed:04x}{i:016}"));
        *container = Some((account.clone(), cid.clone()));
        content.push(json!({"type": "server_tool_use", "id": format!("srvtoolu_{i}"), "name": "code_execution",
            "input": {"code": "import pandas as pd\nprint(pd.read_csv('q3.csv').describe())"}}));
        content.push(json!({"type": "code_execution_tool_result", "tool_use_id": format!("srvtoolu_{i}"),
            "content": {"type": "code_execution_result", "stdout": "count  120\nmean   4.2\n", "stderr": "", "return_code": 0}}));
        response_container = json!({"id": cid, "expires_at": ts(recorded + 3600)});
    } else if rng.chance(2) {
        // Files preloaded into a container; the tool never runs.
        let cid = format!("container_{seed:04x}{i:016}");
        response_container = json!({"id": cid, "expires_at": ts(recorded + 3600)});
        request = json!({"model": model, "max_tokens": 1024, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Summarise the attached file."},
            {"type": "container_upload", "file_id": format!("file_{i}")}]}],
            "tools": [{"type": "code_execution_20250825", "name": "code_execution"}]});
    }

    let message = json!({
        "id": id, "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": "end_turn", "stop_sequence": null,
        "usage": usage, "container": response_container,
    });

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
