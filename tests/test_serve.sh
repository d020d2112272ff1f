#!/bin/sh
# test_serve.sh — `llmlab serve` as its users meet it: the safety refusals at start-up, then a server on a free
# loopback port driven by the real `openai` and `ollama` Python clients (tests/serve/test_clients.py, in the venv
# .ci/run makes: LLMLAB_VENV, default build-venv). TAP output for tests/run.sh. Skips, saying so, when llmlab was
# built without libmicrohttpd, when the shared SmolLM2 model is absent, or when the venv lacks the clients.
bin="${LLMLAB_BIN:-build/llmlab}"
ex="$LLMLAB_EXEC"
shared="${LLMLAB_SHARED:-../shared}"
venv="${LLMLAB_VENV:-build-venv}"
model="$shared/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
tmp=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do echo "#   $l"; done; }
skip() { n=$((n + 1)); echo "ok $n # SKIP $1"; echo "# skip: $1"; }
L() { $ex "$bin" "$@"; }

if [ -n "$ex" ]; then skip "serve tests need loopback networking and the Python clients: not under $ex"; exit 0; fi
L serve -m /nonexistent >"$tmp/out" 2>&1
if grep -q "built without libmicrohttpd" "$tmp/out"; then skip "llmlab built without libmicrohttpd: serve tests skipped"; exit 0; fi

# Refusals before anything is served.
L serve -m "$tmp/none.gguf" >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q "none.gguf: cannot open" "$tmp/err" && ok "a missing model is named" || notok "missing model" "$(cat "$tmp/err")"
if [ ! -f "$model" ]; then skip "SmolLM2-135M-Instruct.Q4_1.gguf not under LLMLAB_SHARED ($shared): serve tests skipped"; exit 0; fi
L serve -m "$model" --host 0.0.0.0 --port 0 >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q "refusing to listen on 0.0.0.0 without an API key" "$tmp/err" \
    && ok "a non-loopback bind without an API key is refused" || notok "non-loopback bind" "exit $rc" "$(cat "$tmp/err")"
L serve -m "$model" --port 0 --api-key a --api-key-file /x >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q "not both" "$tmp/err" && ok "--api-key and --api-key-file together are refused" || notok "key flags" "$(cat "$tmp/err")"

py="$venv/bin/python"
if ! [ -x "$py" ] || ! "$py" -c "import openai, ollama" 2>/dev/null; then
    skip "no venv with the openai and ollama packages at $venv (.ci/run makes it: python3 -m venv $venv && $venv/bin/pip install openai ollama)"
    exit 0
fi

key="test-key-$$"
printf '%s\n' "$key" >"$tmp/key"
"$bin" serve -m "$model" --port 0 -np 4 -c 1024 --api-key-file "$tmp/key" --alias smollm2-test 2>"$tmp/log" &
pid=$!
port=""
for _ in $(seq 1 100); do
    port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/log" 2>/dev/null | head -1)
    [ -n "$port" ] && grep -q "ready:" "$tmp/log" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$port" ] || ! grep -q "ready:" "$tmp/log"; then notok "the server starts" "$(cat "$tmp/log")"; exit 1; fi
ok "the server starts on a free loopback port ($port) and loads the model"

"$py" tests/serve/test_clients.py "http://127.0.0.1:$port" "$key" smollm2-test >"$tmp/py" 2>&1
# Renumber the client tests' TAP lines after ours.
while IFS= read -r line; do
    case "$line" in
        "ok "*|"not ok "*)
            desc=$(echo "$line" | sed -E 's/^(not )?ok [0-9]+ //')
            case "$line" in "not ok"*) n=$((n + 1)); echo "not ok $n $desc" ;; *) n=$((n + 1)); echo "ok $n $desc" ;; esac ;;
        "#"*) echo "$line" ;;
        *) echo "# $line" ;;
    esac
done <"$tmp/py"

# SIGTERM while a long answer streams: the stream ends with an error event and the server exits at once.
"$py" - "$port" "$key" >"$tmp/term" 2>&1 <<'PY' &
import http.client, json, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=60)
c.request("POST", "/v1/completions", headers={"Authorization": "Bearer " + sys.argv[2]},
          body=json.dumps({"model": "smollm2-test", "prompt": "Once", "max_tokens": 1000, "stream": True}))
r = c.getresponse()
print("started", flush=True)
print(r.read().decode().strip().splitlines()[-3:])
PY
cpid=$!
for _ in $(seq 1 50); do grep -q started "$tmp/term" && break; sleep 0.1; done
t0=$(date +%s)
kill -TERM "$pid"; wait "$pid"; rc=$?; pid=""
t1=$(date +%s)
wait "$cpid"
[ $rc -eq 0 ] && grep -q "stopping" "$tmp/log" && [ $((t1 - t0)) -le 5 ] && grep -q "shutting down" "$tmp/term" \
    && ok "SIGTERM mid-stream: the stream ends with an error event, the server exits cleanly at once" \
    || notok "clean stop" "exit $rc in $((t1 - t0)) s" "$(tail -3 "$tmp/log")" "$(cat "$tmp/term")"

# One slot, no queue: a second request while the first streams gets 503 + Retry-After; then it serves again.
"$bin" serve -m "$model" --port 0 -np 1 --queue 0 -c 512 --cors-origin http://app.example 2>"$tmp/log2" &
pid=$!
port=""
for _ in $(seq 1 100); do
    port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/log2" 2>/dev/null | head -1)
    [ -n "$port" ] && grep -q "ready:" "$tmp/log2" && break
    sleep 0.1
done
"$py" - "$port" >"$tmp/busy" 2>&1 <<'PY'
import http.client, json, sys
port = int(sys.argv[1])
def post(body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    return c, c.getresponse()
c1, r1 = post({"model": "SmolLM2-135M-Instruct.Q4_1", "prompt": "Once upon a time", "max_tokens": 300, "stream": True})
assert r1.status == 200 and r1.readline().startswith(b"data: "), r1.status
c2, r2 = post({"model": "SmolLM2-135M-Instruct.Q4_1", "prompt": "Hi", "max_tokens": 2})
body = json.loads(r2.read())
assert r2.status == 503 and r2.getheader("Retry-After") == "1" and body["error"]["code"] == "server_busy", (r2.status, body)
c1.close()
for _ in range(50):  # the slot frees when the server sees the first client gone
    c3, r3 = post({"model": "SmolLM2-135M-Instruct.Q4_1", "prompt": "Hi", "max_tokens": 2})
    if r3.status == 200: break
    r3.read()
    import time; time.sleep(0.1)
assert r3.status == 200 and json.loads(r3.read())["usage"]["completion_tokens"] >= 1, r3.status
print("busy ok")
# --cors-origin: the preflight and the named origin get the CORS headers; any other origin is refused
c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
c.request("OPTIONS", "/v1/chat/completions", headers={"Origin": "http://app.example",
                                                      "Access-Control-Request-Method": "POST"})
r = c.getresponse(); r.read()
assert r.status == 204 and r.getheader("Access-Control-Allow-Origin") == "http://app.example", r.status
assert "Authorization" in r.getheader("Access-Control-Allow-Headers"), r.getheaders()
for origin, want in (("http://app.example", 200), ("http://evil.example", 403)):
    c.request("GET", "/v1/models", headers={"Origin": origin})
    r = c.getresponse(); r.read()
    assert r.status == want, (origin, r.status)
    if want == 200: assert r.getheader("Access-Control-Allow-Origin") == "http://app.example"
print("cors ok")
PY
grep -q "cors ok" "$tmp/busy" && ok "--cors-origin: preflight 204 with the headers, that origin served, another refused" \
    || notok "cors" "$(cat "$tmp/busy")"
grep -q "busy ok" "$tmp/busy" && ok "all slots busy and the queue full: 503 with Retry-After; served again after" \
    || notok "queue bound" "$(cat "$tmp/busy")" "$(tail -3 "$tmp/log2")"
kill -TERM "$pid"; wait "$pid"; pid=""

# Every route the server answers is described in docs/openapi.yaml.
missing=""
for r in $(sed -n 's/^    {"[A-Z]*", "\(\/[^"]*\)".*/\1/p' src/serve/http.c | sed 's|^/v1/models/$|/v1/models/{model}|'); do
    grep -q "^  $r:" docs/openapi.yaml || missing="$missing $r"
done
[ -z "$missing" ] && ok "docs/openapi.yaml describes every route" || notok "openapi routes" "missing:$missing"
echo "1..$n"
