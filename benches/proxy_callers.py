#!/usr/bin/env python3
"""Latency and throughput that `tally proxy` adds for Python callers.

A fake Anthropic upstream (a child process on 127.0.0.1, HTTP/1.1 keep-alive,
TCP_NODELAY, answering at once) serves POST /v1/messages, plain JSON or a
six-event SSE stream (chunked). For each `--tally` binary in turn, so that
binaries are compared back to back on the same machine, the script starts
`tally proxy` on a fresh SQLite ledger (or the --database given) and measures,
straight to the upstream and through the proxy:

  plain        sequential calls on one persistent http.client connection
  stream       sequential streamed calls; time to the first event
               (message_start) and to the last (message_stop)
  sdk          the official `anthropic` SDK, plain and streamed (if installed)
  concurrent   --callers threads, each with its own connection, --per-caller
               plain calls each; calls/s (direct = the Python upstream ceiling)

Each row gives p50/p90/p99/max in ms, the calls more than 30 ms slower than
the median and those taking 30 ms or more (Nagle/delayed-ACK stalls of ~40 ms
show up there), and calls/s; "added" rows are proxy minus direct figures.

    python3 benches/proxy_callers.py --tally /tmp/tally-before \
        --tally target/release/tally [--calls 1000] [--callers 16] [--json out.json]

Stdlib only; the SDK rows need `pip install anthropic` in the Python used.
"""

import argparse, gc, http.client, itertools, json, multiprocessing, os, secrets
import signal, socket, subprocess, sys, tempfile, threading, time, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    import anthropic
except ImportError:
    anthropic = None

MODEL = "claude-sonnet-4-20250514"
HEADERS = {"content-type": "application/json", "x-api-key": "dummy",
           "anthropic-version": "2023-06-01"}
MESSAGE = {"model": MODEL, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
PLAIN_BODY = json.dumps(MESSAGE).encode()
STREAM_BODY = json.dumps({**MESSAGE, "stream": True}).encode()
WARMUP = 50


# --- the fake upstream (runs in its own process, away from the callers' GIL) ---

def upstream_main(nonce, conn):
    ids = itertools.count()
    usage = {"input_tokens": 1200, "output_tokens": 300}

    class Upstream(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # TCP_NODELAY on every accepted socket

        def log_message(self, *args):
            pass

        def read_body(self):
            if "chunked" not in self.headers.get("transfer-encoding", "").lower():
                return self.rfile.read(int(self.headers.get("content-length", 0)))
            parts = []
            for _ in range(1_000_000):
                size = int(self.rfile.readline().split(b";")[0], 16)
                parts.append(self.rfile.read(size) + self.rfile.readline()[:0])
                if size == 0:
                    return b"".join(parts)  # (no trailers are expected)

        def do_POST(self):
            body = self.read_body()
            if self.path.split("?")[0] != "/v1/messages":
                self.wfile.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                return
            mid = f"msg_py_{nonce}_{next(ids)}"
            if json.loads(body or b"{}").get("stream") is True:
                self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                                 b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n")
                start = {"id": mid, "type": "message", "role": "assistant", "model": MODEL,
                         "content": [], "stop_reason": None, "stop_sequence": None,
                         "usage": {"input_tokens": 1200, "output_tokens": 1}}
                events = [{"type": "message_start", "message": start},
                          {"type": "content_block_start", "index": 0,
                           "content_block": {"type": "text", "text": ""}},
                          {"type": "content_block_delta", "index": 0,
                           "delta": {"type": "text_delta", "text": "hi"}},
                          {"type": "content_block_stop", "index": 0},
                          {"type": "message_delta", "usage": usage,
                           "delta": {"stop_reason": "end_turn", "stop_sequence": None}},
                          {"type": "message_stop"}]
                for e in events:  # one write (= one send, NODELAY) per event
                    data = f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.write(b"0\r\n\r\n")
                return
            data = json.dumps({"id": mid, "type": "message", "role": "assistant", "model": MODEL,
                               "content": [{"type": "text", "text": "hi"}],
                               "stop_reason": "end_turn", "stop_sequence": None,
                               "usage": usage}).encode()
            self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n\r\n%s" % (len(data), data))

    server = type("Server", (ThreadingHTTPServer,), {"request_queue_size": 256})(
        ("127.0.0.1", 0), Upstream)
    conn.send(server.server_address[1])
    server.serve_forever()


# --- callers ---

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ms_since(t0):
    return (time.perf_counter() - t0) * 1000.0


def timed(n, call):
    """WARMUP uncounted calls, then n: [(ms, call(t0))]."""
    out = []
    for i in range(WARMUP + n):
        t0 = time.perf_counter()
        result = call(t0)
        if i >= WARMUP:
            out.append((ms_since(t0), result))
    return out


def plain_call(conn, t0=None):
    conn.request("POST", "/v1/messages", body=PLAIN_BODY, headers=HEADERS)
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"status {resp.status}: {data[:200]!r}")


def stream_call(conn, t0):
    """ms from t0 to the end (blank line) of each SSE event, read incrementally."""
    conn.request("POST", "/v1/messages", body=STREAM_BODY, headers=HEADERS)
    resp, marks = conn.getresponse(), []
    if resp.status != 200:
        raise RuntimeError(f"status {resp.status}: {resp.read()[:200]!r}")
    for _ in range(10_000):  # bounded: the stream has 18 lines
        line = resp.readline()
        if not line:
            break
        if line in (b"\n", b"\r\n"):
            marks.append(ms_since(t0))
    if len(marks) != 6:
        raise RuntimeError(f"expected 6 events, read {len(marks)}")
    return marks


def sequential(port, n, call):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        return timed(n, lambda t0: call(conn, t0))
    finally:
        conn.close()


def sdk_calls(port, n, stream):
    client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key="dummy",
                                 max_retries=0)

    def call(t0):
        if not stream:
            return client.messages.create(**MESSAGE)
        with client.messages.stream(**MESSAGE) as events:
            for _ in events:
                pass

    try:
        return [ms for ms, _ in timed(n, call)]
    finally:
        client.close()


def concurrent_calls(port, callers, per_caller):
    """(latencies of all calls, calls/s over the run)."""
    barrier, lat, errors = threading.Barrier(callers + 1, timeout=60), [], []

    def worker():
        mine = []
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            plain_call(conn)  # connect and warm before the clock starts
            barrier.wait()
            for _ in range(per_caller):
                t0 = time.perf_counter()
                plain_call(conn)
                mine.append(ms_since(t0))
            conn.close()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
            barrier.abort()
        lat.extend(mine)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(callers)]
    for t in threads:
        t.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass  # a caller failed; reported below
    t0 = time.perf_counter()
    for t in threads:
        t.join(timeout=600)
    elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} callers failed: {errors[0]!r}")
    return lat, len(lat) / elapsed


# --- statistics and report ---

def stats(samples, rate="sequential"):
    """Percentiles in ms; over30ms = calls > median + 30 ms, ge30ms = calls >= 30 ms."""
    s = sorted(samples)
    pick = lambda p: s[round((len(s) - 1) * p)]  # noqa: E731
    out = {"n": len(s), "p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99), "max": s[-1]}
    out["over30ms"] = sum(1 for x in s if x > out["p50"] + 30.0)
    out["ge30ms"] = sum(1 for x in s if x >= 30.0)
    out["calls_per_s"] = 1000.0 * len(s) / sum(s) if rate == "sequential" else rate
    return out


def added(proxy, direct):
    keys = ("p50", "p90", "p99", "max", "over30ms", "ge30ms")
    return {**{k: proxy[k] - direct[k] for k in keys}, "n": proxy["n"], "calls_per_s": None}


def measure(upport, pport, args):
    """Every measurement straight to the upstream, then through the proxy."""
    results, gc_was = {}, gc.isenabled()
    gc.disable()
    try:
        for where, port in (("direct", upport), ("proxy", pport)):
            if "sequential" not in args.only:
                break
            results[f"plain {where}"] = stats([ms for ms, _ in sequential(port, args.calls,
                                                                           plain_call)])
            streamed = sequential(port, args.calls, stream_call)
            for k, name in ((0, "first event"), (5, "last event")):
                results[f"stream {name} {where}"] = stats([m[k] for _, m in streamed], None)
            results[f"stream total {where}"] = stats([ms for ms, _ in streamed])
            gc.collect()
        if anthropic is not None and "sdk" in args.only:
            for where, port in (("direct", upport), ("proxy", pport)):
                results[f"sdk plain {where}"] = stats(sdk_calls(port, args.calls, False))
                results[f"sdk stream {where}"] = stats(sdk_calls(port, args.calls // 2, True))
                gc.collect()
        for where, port in (("direct", upport), ("proxy", pport)):
            if "concurrent" not in args.only:
                break
            lat, rate = concurrent_calls(port, args.callers, args.per_caller)
            results[f"concurrent x{args.callers} {where}"] = stats(lat, rate)
            gc.collect()
    finally:
        if gc_was:
            gc.enable()
    for name in [k[:-len(" proxy")] for k in results if k.endswith(" proxy")]:
        results[f"{name} added"] = added(results[f"{name} proxy"], results[f"{name} direct"])
    return results


def table(results):
    rows = ["| measurement | p50 ms | p90 ms | p99 ms | max ms | >p50+30ms | >=30ms | calls/s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    bases = [k[:-len(" direct")] for k in results if k.endswith(" direct")]
    order = [f"{b} {w}" for b in bases for w in ("direct", "proxy", "added")]
    for name in order:
        r = results[name]
        rate = "" if r["calls_per_s"] is None else f"{r['calls_per_s']:.0f}"
        rows.append(f"| {name} | {r['p50']:.3f} | {r['p90']:.3f} | {r['p99']:.3f} | "
                    f"{r['max']:.3f} | {r['over30ms']} | {r['ge30ms']} | {rate} |")
    return "\n".join(rows)


# --- one binary ---

def count_records(tally, db):
    try:
        out = subprocess.run([tally, "periods", "--database", db, "--json"], timeout=60,
                             capture_output=True, text=True, check=True).stdout
        return sum(p["records"] for p in json.loads(out))
    except Exception:  # noqa: BLE001 - optional check
        return None


def run_binary(tally, upport, args):
    tally = os.path.abspath(tally)
    work = tempfile.mkdtemp(prefix="tally-bench-")
    db = args.database if args.database.startswith("postgres") else f"sqlite://{work}/ledger.db"
    version = subprocess.run([tally, "--version"], capture_output=True, text=True).stdout.strip()
    before = count_records(tally, db) if db.startswith("postgres") else 0
    pport, aport = free_port(), free_port()
    log = open(os.path.join(work, "proxy.log"), "wb")
    proc = subprocess.Popen([tally, "proxy", "--database", db,
                             "--upstream", f"http://127.0.0.1:{upport}/",
                             "--listen", f"127.0.0.1:{pport}", "--admin-listen", f"127.0.0.1:{aport}",
                             "--spool", os.path.join(work, "spool"), "--default-account", "bench"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(300):  # up to 30 s
            if proc.poll() is not None:
                raise RuntimeError(f"tally proxy exited with {proc.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{aport}/healthz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError(f"tally proxy not healthy after 30 s; see {log.name}")
        print(f"measuring {tally} ({version}), ledger {db}, log {log.name}", file=sys.stderr)
        results = measure(upport, pport, args)
        with urllib.request.urlopen(f"http://127.0.0.1:{aport}/metrics", timeout=5) as r:
            metrics = dict(line.rsplit(" ", 1) for line in r.read().decode().splitlines()
                           if line and not line.startswith("#"))
        waits = float(metrics.get("tally_proxy_record_wait_seconds_count", 0))
        if waits:
            wait = float(metrics["tally_proxy_record_wait_seconds_sum"]) / waits * 1000
            print(f"mean wait for the record: {wait:.3f} ms over {waits:.0f} calls",
                  file=sys.stderr)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    sdk = 2 * WARMUP + args.calls + args.calls // 2 if anthropic is not None else 0
    through = 2 * (WARMUP + args.calls) + sdk + args.callers * (1 + args.per_caller)
    after = count_records(tally, db)
    recorded = None if after is None or before is None else after - before
    return {"tally": tally, "version": version, "database": db, "results": results,
            "calls_through_proxy": through, "records_recorded": recorded}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tally", action="append", required=True, help="tally binary (repeatable)")
    ap.add_argument("--database", default="sqlite", help="sqlite (a fresh file) or postgres://...")
    ap.add_argument("--calls", type=int, default=1000, help="sequential calls per measurement")
    ap.add_argument("--callers", type=int, default=16, help="concurrent callers")
    ap.add_argument("--per-caller", type=int, default=300, help="calls per concurrent caller")
    ap.add_argument("--json", help="write all numbers to this file")
    ap.add_argument("--only", default="sequential,sdk,concurrent",
                    help="which measurements (comma-separated: sequential, sdk, concurrent)")
    args = ap.parse_args()
    if anthropic is None:
        print("note: `import anthropic` failed; the SDK rows are skipped", file=sys.stderr)

    parent, child = multiprocessing.get_context("fork").Pipe()
    upstream = multiprocessing.get_context("fork").Process(
        target=upstream_main, args=(secrets.token_hex(4), child), daemon=True)
    upstream.start()
    try:
        if not parent.poll(10):
            raise RuntimeError("the fake upstream did not start")
        upport = parent.recv()
        runs = [run_binary(t, upport, args) for t in args.tally]
    finally:
        upstream.terminate()
        upstream.join(5)

    config = {"calls": args.calls, "callers": args.callers, "per_caller": args.per_caller,
              "warmup": WARMUP, "python": sys.version.split()[0],
              "anthropic": getattr(anthropic, "__version__", None)}
    print(f"calls={args.calls} callers={args.callers}x{args.per_caller} warmup={WARMUP} "
          f"python={config['python']} anthropic={config['anthropic']}")
    for run in runs:
        print(f"\n### {run['tally']} ({run['version']})\n")
        print(table(run["results"]))
        print(f"\nrecords in the ledger: {run['records_recorded']} "
              f"of {run['calls_through_proxy']} calls through the proxy")
    if len(runs) > 1:
        names = [k for k in runs[0]["results"] if k.endswith(" added")]
        print("\n### added by the proxy, p50 / p99 ms (through-proxy calls >= 30 ms)\n")
        print("| measurement | " + " | ".join(f"{i}: {os.path.basename(r['tally'])}" for i, r in enumerate(runs, 1)) + " |")
        print("|---|" + "---:|" * len(runs))
        for name in names:
            cells = [f"{r['results'][name]['p50']:.3f} / {r['results'][name]['p99']:.3f} "
                     f"({r['results'][name.replace('added', 'proxy')]['ge30ms']})" for r in runs]
            print(f"| {name[:-6]} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": config, "runs": runs}, f, indent=2)


if __name__ == "__main__":
    main()
