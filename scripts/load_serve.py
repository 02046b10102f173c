#!/usr/bin/env python3
"""Load-test helper for scripts/load_serve.sh (stdlib only, except `refserver`).

  load_serve.py client --url http://127.0.0.1:PORT --data data/demo.jsonl --requests N \
      --cell-seconds S --out results.json
      OpenRLHF-shaped POST /get_reward load: for 1-item and 32-item requests at 1, 8 and 32
      concurrent clients (threads, one keep-alive http.client connection each), N requests
      per cell or S seconds, whichever comes first. Writes per-cell requests/s, items/s,
      p50/p99 latency and errors as JSON.

  load_serve.py phases --url ... --data ... --n N
      one client, one request at a time: GET /health (HTTP round trip alone), POST /score
      with 1 item and with 32 items; median latencies as JSON.

  load_serve.py refserver --model DIR --port PORT [--threads 2]
      the reference: HF transformers' AutoModelForSequenceClassification on the same export,
      behind http.server.ThreadingHTTPServer, answering /get_reward, /score and /health in the
      same shapes. No batching across requests (each request is one forward pass over its own
      items, under a lock); queries are split like the engine's HH-RLHF transcript rule.

  load_serve.py table --ours A.json --ref B.json
      both tables and ours/reference requests/s per cell.
"""

import argparse
import http.client
import json
import statistics
import sys
import threading
import time

CELLS = [(items, conc) for items in (1, 32) for conc in (1, 8, 32)]


def load_queries(path):
    """HH-RLHF transcripts ("\\n\\nHuman: ...\\n\\nAssistant: ...") of prompt + chosen and
    prompt + rejected, the shape OpenRLHF sends and `engine serve` splits back."""
    out, items = [], []
    for line in open(path):
        if not line.strip():
            continue
        row = json.loads(line)
        conv = "".join(
            ("\n\nHuman: " if m["role"] == "user" else "\n\nAssistant: ") + m["content"]
            for m in row["prompt"] if m["role"] in ("user", "assistant"))
        for resp in (row["chosen"], row["rejected"]):
            out.append(conv + "\n\nAssistant: " + resp)
            items.append({"prompt": row["prompt"], "response": resp})
    return out, items


def percentile(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(q / 100 * len(xs) + 0.5)) - 1))
    return xs[k]


class Conn:
    def __init__(self, host, port):
        self.host, self.port = host, port
        self.c = None

    def request(self, method, path, body=None):
        for attempt in (0, 1):
            if self.c is None:
                self.c = http.client.HTTPConnection(self.host, self.port, timeout=120)
            try:
                headers = {"Content-Type": "application/json"} if body is not None else {}
                self.c.request(method, path, body=body, headers=headers)
                r = self.c.getresponse()
                data = r.read()
                return r.status, data
            except (ConnectionError, http.client.HTTPException, OSError):
                self.c.close()
                self.c = None
                if attempt:
                    raise

    def close(self):
        if self.c:
            self.c.close()


def hostport(url):
    hp = url.split("://", 1)[1].rstrip("/")
    h, p = hp.rsplit(":", 1)
    assert h in ("127.0.0.1", "localhost"), "loopback only"
    return h, int(p)


def run_cell(host, port, queries, items, conc, n_requests, seconds):
    lock = threading.Lock()
    state = {"next": 0, "lat": [], "errors": 0, "items_ok": 0}
    deadline = time.perf_counter() + seconds

    def worker(wid):
        conn = Conn(host, port)
        try:
            while True:
                with lock:
                    if state["next"] >= n_requests or time.perf_counter() >= deadline:
                        return
                    i = state["next"]
                    state["next"] += 1
                start = (i * items) % len(queries)
                batch = [queries[(start + j) % len(queries)] for j in range(items)]
                body = json.dumps({"query": batch}).encode()
                t0 = time.perf_counter()
                try:
                    status, data = conn.request("POST", "/get_reward", body)
                    ok = status == 200 and len(json.loads(data)["rewards"]) == items
                except Exception:
                    ok = False
                dt = time.perf_counter() - t0
                with lock:
                    if ok:
                        state["lat"].append(dt)
                        state["items_ok"] += items
                    else:
                        state["errors"] += 1
        finally:
            conn.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 150)
    wall = time.perf_counter() - t0
    lat = state["lat"]
    return {
        "items": items, "clients": conc, "requests": len(lat), "errors": state["errors"],
        "seconds": wall, "req_per_s": len(lat) / wall, "items_per_s": state["items_ok"] / wall,
        "p50_ms": percentile(lat, 50) * 1e3, "p99_ms": percentile(lat, 99) * 1e3,
        "capped_by_time": state["next"] < n_requests,
    }


def rss_kb(pid, field="VmRSS"):
    if not pid:
        return 0
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def cmd_client(args):
    host, port = hostport(args.url)
    queries, _ = load_queries(args.data)
    rss_start = rss_kb(args.pid)
    # warm-up: a few requests of each size, not measured
    conn = Conn(host, port)
    for items in (1, 32, 1, 32):
        conn.request("POST", "/get_reward", json.dumps({"query": queries[:items]}).encode())
    conn.close()
    rss_warm = rss_kb(args.pid)
    cells = []
    cell_list = CELLS if not args.cells else [tuple(int(x) for x in c.split("x")) for c in args.cells.split(",")]
    for items, conc in cell_list:
        r = run_cell(host, port, queries, items, conc, args.requests, args.cell_seconds)
        print(f"  [{args.label}] {items:2d} items x {conc:2d} clients: {r['requests']} req in {r['seconds']:.1f}s, "
              f"{r['req_per_s']:.1f} req/s, p50 {r['p50_ms']:.1f} ms, errors {r['errors']}", file=sys.stderr, flush=True)
        cells.append(r)
    out = {"label": args.label, "cells": cells, "rss_start_kb": rss_start, "rss_warm_kb": rss_warm,
           "rss_after_kb": rss_kb(args.pid), "rss_peak_kb": rss_kb(args.pid, "VmHWM")}
    json.dump(out, open(args.out, "w"), indent=1)


def cmd_phases(args):
    host, port = hostport(args.url)
    _, items = load_queries(args.data)
    conn = Conn(host, port)
    res = {}
    for name, method, path, body in [
        ("health", "GET", "/health", None),
        ("score_1", "POST", "/score", json.dumps({"items": items[:1]}).encode()),
        ("score_32", "POST", "/score", json.dumps({"items": items[:32]}).encode()),
    ]:
        conn.request(method, path, body)  # warm-up
        lat = []
        for _ in range(args.n):
            t0 = time.perf_counter()
            status, _ = conn.request(method, path, body)
            lat.append(time.perf_counter() - t0)
            assert status == 200, status
        res[name] = statistics.median(lat) * 1e3
    conn.close()
    print(json.dumps(res))


def cmd_refserver(args):
    import torch
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(args.threads)
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(args.model).eval()
    lock = threading.Lock()
    names = {"system": "System: ", "user": "User: ", "assistant": "Assistant: "}

    def render(messages):
        return "\n".join(names[m["role"]] + m["content"] for m in messages)

    def split(query):
        # the HH-RLHF rule for single- and multi-turn transcripts: the last Assistant turn is the response
        k = query.rfind("\n\nAssistant: ")
        if k < 0:
            return [], query
        head, resp = query[:k], query[k + len("\n\nAssistant: "):]
        msgs = []
        for part in head.split("\n\n"):
            if part.startswith("Human: "):
                msgs.append({"role": "user", "content": part[7:]})
            elif part.startswith("Assistant: "):
                msgs.append({"role": "assistant", "content": part[11:]})
            elif msgs:
                msgs[-1]["content"] += "\n\n" + part
        return msgs, resp

    def score(pairs):
        a = [render(p) for p, _ in pairs]
        b = [r for _, r in pairs]
        enc = tok(a, b, padding=True, truncation=True, max_length=256, return_tensors="pt")
        with lock, torch.inference_mode():
            return model(**enc).logits[:, 0].tolist()

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else headers and body in two writes meet delayed ACK: +40 ms

        def log_message(self, *a):
            pass

        def send(self, code, obj):
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/health":
                self.send(200, {"status": "ok"})
            else:
                self.send(404, {"error": "not found"})

        def do_POST(self):
            n = int(self.headers.get("Content-Length", 0))
            try:
                body = json.loads(self.rfile.read(n))
                if self.path == "/get_reward":
                    r = score([split(q) for q in body["query"]]) if body["query"] else []
                    self.send(200, {"rewards": r, "scores": r, "extra_logs": {}})
                elif self.path == "/score":
                    pairs = [([{"role": "user", "content": it["prompt"]}] if isinstance(it["prompt"], str)
                              else it["prompt"], it["response"]) for it in body["items"]]
                    self.send(200, {"rewards": score(pairs) if pairs else []})
                else:
                    self.send(404, {"error": "not found"})
            except Exception as e:  # noqa: BLE001
                self.send(400, {"error": str(e)})

    class S(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128

    srv = S(("127.0.0.1", args.port), H)
    print(f"listening on http://127.0.0.1:{srv.server_address[1]}", flush=True)
    srv.serve_forever()


def cmd_table(args):
    ours, ref = json.load(open(args.ours)), json.load(open(args.ref))

    def table(title, d):
        n = sum(c["requests"] + c["errors"] for c in d["cells"])
        mib = lambda k: d[k] / 1024
        print(f"{title}: server RSS {mib('rss_start_kb'):.1f} MiB before any request, {mib('rss_warm_kb'):.1f} MiB after"
              f" warm-up, {mib('rss_after_kb'):.1f} MiB after all {n} requests (peak {mib('rss_peak_kb'):.1f} MiB)")
        print("| items/req | clients | requests | req/s | items/s | p50 ms | p99 ms | errors |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for c in d["cells"]:
            print(f"| {c['items']} | {c['clients']} | {c['requests']}{'*' if c['capped_by_time'] else ''} | "
                  f"{c['req_per_s']:.1f} | {c['items_per_s']:.1f} | {c['p50_ms']:.1f} | {c['p99_ms']:.1f} | {c['errors']} |")
        print()

    table("engine serve", ours)
    table("reference (HF transformers + ThreadingHTTPServer, no batching)", ref)
    print("ours / reference, requests/s (same client, same cells, run one after the other)")
    print("| items/req | clients | ratio |")
    print("|---:|---:|---:|")
    for a, b in zip(ours["cells"], ref["cells"]):
        ratio = a["req_per_s"] / b["req_per_s"] if b["req_per_s"] else float("inf")
        print(f"| {a['items']} | {a['clients']} | {ratio:.2f}x |")
    if any(c["capped_by_time"] for c in ours["cells"] + ref["cells"]):
        print("(* the cell hit its time cap before its request count)")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("client")
    c.add_argument("--url", required=True)
    c.add_argument("--data", required=True)
    c.add_argument("--requests", type=int, default=200)
    c.add_argument("--cell-seconds", type=float, default=30)
    c.add_argument("--label", default="")
    c.add_argument("--pid", type=int, default=0, help="server PID whose VmRSS/VmHWM to read")
    c.add_argument("--cells", default="", help="e.g. 1x8,32x1 (ITEMSxCLIENTS); default all six")
    c.add_argument("--out", required=True)
    ph = sub.add_parser("phases")
    ph.add_argument("--url", required=True)
    ph.add_argument("--data", required=True)
    ph.add_argument("--n", type=int, default=20)
    r = sub.add_parser("refserver")
    r.add_argument("--model", required=True)
    r.add_argument("--port", type=int, default=0)
    r.add_argument("--threads", type=int, default=2)
    t = sub.add_parser("table")
    t.add_argument("--ours", required=True)
    t.add_argument("--ref", required=True)
    args = p.parse_args()
    {"client": cmd_client, "phases": cmd_phases, "refserver": cmd_refserver, "table": cmd_table}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
