"""Schemathesis hooks for tally's OpenAPI test (tests/it/schemathesis.rs).

Two things only:

- serializers for the bodies schemathesis has none for: NDJSON batches
  and TOML plans (the generated string is sent as it is) and JSON merge
  patches (as JSON);
- the acceptance of a text body (NDJSON, TOML) that schemathesis generated
  as another type: sent as text, it is an ordinary body;
- the rules no JSON Schema can state, because they relate two values (the
  document states each in a description, under "Rule:"). A request that
  breaks one of them is still sent, and its answer still checked for 5xx,
  status and content type; only the "schema-valid request rejected"
  failure is dropped, and only for a request that does break the rule.
  Everything else the server refuses must be in the schema.
"""

from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_CEILING, Decimal

import json

import schemathesis

# The plan body is TOML, which JSON Schema does not describe: only its
# example (see the document) must be accepted.
PLAN_EXAMPLE_MARK = "[[version]]"

# Container seconds a day an estimate accepts (src/estimate/mod.rs), and a
# bound on the price book's minimum container time.
MAX_SECONDS_PER_DAY = Decimal(10**12)
MINIMUM_CONTAINER_SECONDS_BOUND = Decimal(3600)


@schemathesis.serializer("application/x-ndjson", "application/toml")
def as_text(ctx, value):
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


@schemathesis.serializer("application/merge-patch+json")
def as_merge_patch(ctx, value):
    if isinstance(value, bytes):
        return value
    return json.dumps(value).encode("utf-8")


def _time(text):
    try:
        return datetime.fromisoformat(str(text).replace("z", "Z").replace("t", "T"))
    except ValueError:
        return None


def _started_after_recorded(case):
    body = case.body if isinstance(case.body, dict) else {}
    started = _time(body.get("started_at")) if body.get("started_at") else None
    if started is None:
        return False
    recorded = body.get("recorded_at") or (case.query or {}).get("recorded_at")
    recorded = _time(recorded) if recorded else datetime.now(timezone.utc)
    return recorded is None or started > recorded


def _usage_breaks_a_rule(case):
    """POST /v1/usage: started_at after recorded_at, a record with no
    account and no `?account=`, or a time more than a day ahead."""
    if _started_after_recorded(case):
        return True
    body = case.body if isinstance(case.body, dict) else {}
    query = case.query or {}
    if "account" not in body and "account" not in query:
        return True
    now = datetime.now(timezone.utc)
    for text in (body.get("recorded_at"), body.get("started_at"), query.get("recorded_at")):
        t = _time(text) if isinstance(text, str) else None
        if t is not None and t.tzinfo is not None and t > now + timedelta(days=1):
            return True
    return False


def _batch_breaks_a_rule(case):
    """POST /v1/usage/batch: `?recorded_at=` more than a day ahead."""
    t = _time((case.query or {}).get("recorded_at", ""))
    return t is not None and t.tzinfo is not None and t > datetime.now(timezone.utc) + timedelta(days=1)


def _breakdown_with_csv(case):
    query = case.query or {}
    if query.get("breakdown") is None:
        return False
    accept = str((case.headers or {}).get("Accept", ""))
    return query.get("format") == "csv" or "text/csv" in accept


def _cost_report_range_is_empty(case):
    query = case.query or {}
    start = _time(query.get("starting_at", ""))
    if start is None:
        return False
    first_day = start.astimezone(timezone.utc).date()
    end_day = datetime.now(timezone.utc).date() + timedelta(days=1)
    if query.get("ending_at"):
        end = _time(query["ending_at"])
        if end is None:
            return False
        end = end.astimezone(timezone.utc)
        end_day = end.date() if end.time() == datetime.min.time() else end.date() + timedelta(days=1)
    if end_day <= first_day:
        return True
    page = query.get("page")
    if page:
        try:
            page_day = date.fromisoformat(page)
        except ValueError:
            return False
        return not (first_day <= page_day < end_day)
    return False


def _number(value):
    return Decimal(str(value)) if value is not None else Decimal(0)


def _workload_over_limits(case):
    body = case.body if isinstance(case.body, dict) else {}
    for w in body.get("workload") or []:
        if not isinstance(w, dict):
            continue
        code, files = _number(w.get("code_execution_share")), _number(w.get("files_preloaded_share"))
        if code + files > 1:
            return True
        per_code = max((_number(w.get("container_minutes")) * 60).to_integral_value(ROUND_CEILING),
                       MINIMUM_CONTAINER_SECONDS_BOUND)
        seconds = _number(w.get("requests_per_day")) * (
            code * per_code + files * MINIMUM_CONTAINER_SECONDS_BOUND)
        if seconds > MAX_SECONDS_PER_DAY:
            return True
    return False


def _plan_is_not_the_example(case):
    return PLAN_EXAMPLE_MARK not in str(case.body or "")


RULES = {
    ("POST", "/v1/usage"): _usage_breaks_a_rule,
    ("POST", "/v1/usage/batch"): _batch_breaks_a_rule,
    ("GET", "/v1/accounts/{account}/invoices/{period}"): _breakdown_with_csv,
    ("GET", "/v1/cost_report"): _cost_report_range_is_empty,
    ("POST", "/v1/estimate"): _workload_over_limits,
    ("PUT", "/v1/accounts/{account}/plan"): _plan_is_not_the_example,
}


def _not_text(case):
    """A text body (NDJSON, TOML) that schemathesis made as another type:
    it is sent as text all the same (see the serializers), and any text is
    a body like any other, so "the wrong type was accepted" cannot apply."""
    return not isinstance(case.body, (str, bytes))


# Where a schema-violating request cannot be told from a valid one on the wire.
INDISTINGUISHABLE = {
    ("POST", "/v1/usage/batch"): _not_text,
    ("PUT", "/v1/accounts/{account}/plan"): _not_text,
}


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Keep every failure but a refusal of a request that breaks a Rule, and
    the acceptance of a "wrong type" text body sent as text."""
    code = getattr(failure, "code", None)
    key = (case.operation.method.upper(), case.operation.path)
    if code == "ST201":
        excuse = INDISTINGUISHABLE.get(key)
        return not (excuse and excuse(case))
    if code != "ST202":
        return True
    rule = RULES.get(key)
    return not (rule and rule(case))
