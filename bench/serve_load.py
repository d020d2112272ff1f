"""serve_load.py — load on a running `llmlab serve` (or any OpenAI-compatible server) over loopback: C concurrent
streaming clients for a fixed time, each sending chat requests back to back. Reports failed requests, aggregate
generated tokens/s, time to first token and inter-token latency (p50/p99), and, given the server's pid, its RSS
sampled every second (flat after warm-up = no leak). Standard library only.

Usage: python3 bench/serve_load.py --url http://127.0.0.1:8080 --model NAME [--clients 64] [--seconds 60]
         [--max-tokens 64] [--key KEY] [--pid PID] [--kill-one]     (--kill-one: one client drops mid-stream)
"""
import argparse
import http.client
import json
import threading
import time
import urllib.parse


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def heap_bytes(url, key):
    """llmlab_heap_in_use_bytes from /metrics (None when the server has no such line)."""
    try:
        c = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        c.request("GET", "/metrics", headers={"Authorization": f"Bearer {key}"} if key else {})
        for line in c.getresponse().read().decode().splitlines():
            if line.startswith("llmlab_heap_in_use_bytes "):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def client(i, a, url, stop_at, out, lock):
    prompts = ["Write a short story about a robot.", "Explain photosynthesis.", "List three colours and why.",
               "What is a prime number?"]
    k = 0
    while time.time() < stop_at:
        body = json.dumps({"model": a.model, "max_tokens": a.max_tokens, "stream": True, "temperature": 0.7,
                           "messages": [{"role": "user", "content": f"{prompts[(i + k) % 4]} (client {i}, #{k})"}],
                           "stream_options": {"include_usage": True}})
        k += 1
        hdrs = {"Content-Type": "application/json"}
        if a.key:
            hdrs["Authorization"] = f"Bearer {a.key}"
        t0 = time.time()
        stamps, n_tok, ok, err = [], 0, False, ""
        try:
            c = http.client.HTTPConnection(url.hostname, url.port, timeout=300)
            c.request("POST", "/v1/chat/completions", body=body, headers=hdrs)
            r = c.getresponse()
            if r.status != 200:
                err = f"HTTP {r.status}: {r.read()[:200]!r}"
            else:
                while True:
                    line = r.readline()
                    if not line:
                        break
                    if not line.startswith(b"data: "):
                        continue
                    if line.strip() == b"data: [DONE]":
                        ok = True
                        break
                    ev = json.loads(line[6:])
                    if ev.get("choices") and ev["choices"][0]["delta"].get("content"):
                        stamps.append(time.time())
                    if ev.get("usage"):
                        n_tok = ev["usage"]["completion_tokens"]
                    if a.kill_one and i == 0 and k == 1 and len(stamps) == 3:
                        c.sock.shutdown(2)  # drop mid-stream: the server must free the slot
                        c.close()
                        ok, err = True, "dropped on purpose"
                        break
            c.close()
        except Exception as e:  # noqa: BLE001
            err = repr(e)
        with lock:
            if ok:
                out["ok"] += 1
                out["tokens"] += n_tok
                if stamps:
                    out["ttft"].append(stamps[0] - t0)
                    out["itl"].extend(b - a_ for a_, b in zip(stamps, stamps[1:]))
            else:
                out["failed"] += 1
                out["errors"].append(err or "stream ended without [DONE]")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--key")
    ap.add_argument("--pid", type=int)
    ap.add_argument("--kill-one", action="store_true")
    a = ap.parse_args()
    url = urllib.parse.urlparse(a.url)
    out = {"ok": 0, "failed": 0, "tokens": 0, "ttft": [], "itl": [], "errors": []}
    lock = threading.Lock()
    t0 = time.time()
    stop_at = t0 + a.seconds
    ts = [threading.Thread(target=client, args=(i, a, url, stop_at, out, lock), daemon=True) for i in range(a.clients)]
    for t in ts:
        t.start()
    rss, heap = [], []
    while any(t.is_alive() for t in ts):
        if a.pid:
            rss.append((round(time.time() - t0), rss_kb(a.pid)))
        heap.append(heap_bytes(url, a.key))
        time.sleep(1)
    wall = time.time() - t0
    res = {"clients": a.clients, "seconds": round(wall, 1), "requests_ok": out["ok"], "requests_failed": out["failed"],
           "tokens_per_s": round(out["tokens"] / wall, 1),
           "ttft_ms_p50": round(pct(out["ttft"], 50) * 1e3, 1), "ttft_ms_p99": round(pct(out["ttft"], 99) * 1e3, 1),
           "itl_ms_p50": round(pct(out["itl"], 50) * 1e3, 1), "itl_ms_p99": round(pct(out["itl"], 99) * 1e3, 1),
           "errors": out["errors"][:5]}
    if rss:
        warm = [kb for s, kb in rss if s >= min(10, a.seconds / 3)]
        res["rss_mib_first_last_max_after_warmup"] = [round(warm[0] / 1024, 1), round(warm[-1] / 1024, 1),
                                                      round(max(warm) / 1024, 1)] if warm else None
        res["rss_mib_series"] = [round(kb / 1024, 1) for _, kb in rss[::max(1, len(rss) // 12)]]
    heap = [x for x in heap if x is not None]
    if heap:
        res["heap_mib_series"] = [round(x / 2**20, 2) for x in heap[::max(1, len(heap) // 12)]]
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
