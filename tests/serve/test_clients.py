"""test_clients.py — `llmlab serve` driven through the real `openai` and `ollama` Python clients, plus raw HTTP for
what clients never send (malformed JSON, a 10 MB body, a foreign Host header). Each check prints a TAP line
(tests/run.sh counts them); the last line is "N passed, N failed".

Usage: python test_clients.py BASE_URL API_KEY MODEL_NAME   (a server already running with that key and model)
"""
import http.client
import json
import sys
import threading
import time
import traceback
import urllib.parse

import ollama
import openai

BASE, KEY, MODEL = sys.argv[1], sys.argv[2], sys.argv[3]
URL = urllib.parse.urlparse(BASE)
n_ok = n_fail = 0
n = 0


def check(desc, fn):
    global n, n_ok, n_fail
    n += 1
    try:
        fn()
        print(f"ok {n} - {desc}", flush=True)
        n_ok += 1
    except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the run
        print(f"not ok {n} - {desc}", flush=True)
        for line in (f"{type(e).__name__}: {e}\n" + traceback.format_exc(limit=3)).splitlines():
            print(f"#   {line}", flush=True)
        n_fail += 1


def raw(method, path, body=None, headers=None, host=None):
    """One request over http.client: (status, headers dict, body bytes)."""
    c = http.client.HTTPConnection(URL.hostname, URL.port, timeout=60)
    h = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    h.update(headers or {})
    if host is not None:
        c.putrequest(method, path, skip_host=True)
        c.putheader("Host", host)
        for k, v in h.items():
            c.putheader(k, v)
        if body is not None:
            c.putheader("Content-Length", str(len(body)))
        c.endheaders(body)
    else:
        c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return r.status, hdrs, data


def still_serving():
    st, _, body = raw("GET", "/health")
    assert st == 200 and json.loads(body)["status"] == "ok", (st, body)
    r = oa.completions.create(model=MODEL, prompt="One, two,", max_tokens=2, temperature=0)
    assert r.usage.completion_tokens >= 1


def metric(name):
    st, _, body = raw("GET", "/metrics")
    assert st == 200
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


oa = openai.OpenAI(base_url=BASE + "/v1", api_key=KEY, max_retries=0, timeout=120)
ol = ollama.Client(host=BASE, headers={"Authorization": f"Bearer {KEY}"})
MSGS = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
ref = {}


def t_models():
    ids = [m.id for m in oa.models.list().data]
    assert ids == [MODEL], ids
    assert oa.models.retrieve(MODEL).id == MODEL
    try:
        oa.models.retrieve("gpt-imaginary")
        raise AssertionError("an unknown model was found")
    except openai.NotFoundError as e:
        assert e.body["code"] == "model_not_found", e.body


def t_chat():
    r = oa.chat.completions.create(model=MODEL, messages=MSGS, max_tokens=24, temperature=0)
    c = r.choices[0]
    assert c.message.role == "assistant" and c.message.content, r
    assert c.finish_reason in ("stop", "length"), c.finish_reason
    u = r.usage
    assert u.prompt_tokens > 5 and 1 <= u.completion_tokens <= 24 and u.total_tokens == u.prompt_tokens + u.completion_tokens, u
    if c.finish_reason == "length":
        assert u.completion_tokens == 24, u
    ref["chat"] = (c.message.content, u.prompt_tokens, u.completion_tokens, c.finish_reason)


def t_chat_stream():
    chunks = list(oa.chat.completions.create(model=MODEL, messages=MSGS, max_tokens=24, temperature=0, stream=True,
                                             stream_options={"include_usage": True}))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    fins = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    usage = chunks[-1].usage
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(ch.object == "chat.completion.chunk" for ch in chunks)
    content, n_prompt, n_gen, fin = ref["chat"]
    assert text == content, (text, content)  # greedy: the same text streamed or not
    assert fins == [fin], fins
    assert usage and usage.prompt_tokens == n_prompt and usage.completion_tokens == n_gen, usage


def t_completion():
    r = oa.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=10, temperature=0)
    c = r.choices[0]
    assert r.object == "text_completion" and c.text, r
    assert c.finish_reason == "length" and r.usage.completion_tokens == 10, r  # 10 tokens asked, 10 counted
    ref["completion"] = c.text
    s = "".join(ch.choices[0].text for ch in oa.completions.create(model=MODEL, prompt="Once upon a time",
                                                                    max_tokens=10, temperature=0, stream=True))
    assert s == c.text, (s, c.text)


def t_stop():
    full = oa.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=24, temperature=0).choices[0].text
    words = full.split()
    assert len(words) >= 4, full
    stop = " " + words[3]  # a string from the middle of the greedy answer
    cut = full[:full.index(stop)]
    for stream in (False, True):
        if stream:
            chunks = list(oa.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=24, temperature=0,
                                                stop=[stop, "zzqx"], stream=True))
            text = "".join(ch.choices[0].text for ch in chunks)
            fin = [ch.choices[0].finish_reason for ch in chunks if ch.choices[0].finish_reason]
            fin = fin[0] if fin else None
        else:
            r = oa.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=24, temperature=0, stop=stop)
            text, fin = r.choices[0].text, r.choices[0].finish_reason
        assert text == cut and stop not in text and fin == "stop", (stream, text, cut, fin)


def t_seed():
    # Warm the prefix cache first: a prompt evaluated cold (one prefill) and one continued from cached rows differ
    # in the last bits of their logits, which can flip a sample at temperature 1; with equal cache state they agree.
    oa.completions.create(model=MODEL, prompt="The weather", max_tokens=1, temperature=0)
    a = oa.completions.create(model=MODEL, prompt="The weather", max_tokens=12, temperature=1.0, seed=7).choices[0].text
    b = oa.completions.create(model=MODEL, prompt="The weather", max_tokens=12, temperature=1.0, seed=7).choices[0].text
    assert a == b, (a, b)


def t_ollama_chat():
    r = ol.chat(model=MODEL, messages=MSGS, options={"temperature": 0, "num_predict": 24, "repeat_penalty": 1})
    content, n_prompt, n_gen, _ = ref["chat"]
    assert r.message.role == "assistant" and r.message.content == content, (r.message.content, content)
    assert r.done and r.prompt_eval_count == n_prompt and r.eval_count == n_gen, r
    assert r.total_duration > 0 and r.eval_duration > 0, r  # nanoseconds
    parts = list(ol.chat(model=MODEL, messages=MSGS, options={"temperature": 0, "num_predict": 24, "repeat_penalty": 1},
                     stream=True))
    assert "".join(p.message.content for p in parts) == content
    assert parts[-1].done and not any(p.done for p in parts[:-1]) and parts[-1].eval_count == n_gen


def t_ollama_generate_tags():
    r = ol.generate(model=MODEL, prompt="Once upon a time", raw=True, options={"temperature": 0, "num_predict": 10, "repeat_penalty": 1})
    assert r.response == ref["completion"] and r.done_reason == "length" and r.eval_count == 10, r
    names = [m.model for m in ol.list().models]
    assert names == [MODEL], names
    st, _, body = raw("GET", "/api/version")
    assert st == 200 and "version" in json.loads(body)


def t_wrong_key():
    bad = openai.OpenAI(base_url=BASE + "/v1", api_key="wrong-key", max_retries=0)
    try:
        bad.chat.completions.create(model=MODEL, messages=MSGS, max_tokens=4)
        raise AssertionError("a wrong key was accepted")
    except openai.AuthenticationError as e:
        assert e.status_code == 401 and e.body["code"] == "invalid_api_key", e.body
    st, _, _ = raw("GET", "/v1/models", headers={"Authorization": ""})
    assert st == 401
    still_serving()


def t_malformed():
    for body in (b'{"model": "x", "messages": [', b"\xff\xfe", b"[1,2]", b'{"model":' + b"[" * 5000):
        st, _, data = raw("POST", "/v1/chat/completions", body=body)
        err = json.loads(data)["error"]
        assert st == 400 and err["type"] == "invalid_request_error" and err["message"], (st, data)
    st, _, data = raw("POST", "/api/chat", body=b"{nope")
    assert st == 400 and isinstance(json.loads(data)["error"], str), data  # Ollama's shape
    still_serving()


def t_negative_max_tokens():
    try:
        oa.chat.completions.create(model=MODEL, messages=MSGS, max_tokens=-5)
        raise AssertionError("max_tokens -5 accepted")
    except openai.BadRequestError as e:
        assert e.status_code == 400 and e.body["param"] == "max_tokens", e.body
    for bad in ({"temperature": 3}, {"top_p": "x"}, {"messages": []}, {"stop": ["a"] * 20}, {"n": 2}):
        body = {"model": MODEL, "messages": MSGS, **bad}
        st, _, data = raw("POST", "/v1/chat/completions", body=json.dumps(body).encode())
        assert st == 400, (bad, st, data)
    still_serving()


def t_big_body():
    body = b'{"model": "%s", "prompt": "' % MODEL.encode() + b"a" * (10 << 20) + b'"}'
    try:
        st, _, data = raw("POST", "/v1/completions", body=body)
        assert st == 413 and json.loads(data)["error"]["code"] == "request_too_large", (st, data[:200])
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered 413 and closed before the client finished sending: also a refusal
    still_serving()


def t_unknown_model():
    try:
        oa.chat.completions.create(model="gpt-imaginary", messages=MSGS, max_tokens=4)
        raise AssertionError("an unknown model was accepted")
    except openai.NotFoundError as e:
        assert e.status_code == 404 and e.body["code"] == "model_not_found", e.body
    try:
        ol.chat(model="nope:latest", messages=MSGS)
        raise AssertionError("ollama: unknown model accepted")
    except ollama.ResponseError as e:
        assert e.status_code == 404, e
    still_serving()


def t_host():
    st, _, data = raw("GET", "/v1/models", host="evil.example")
    assert st == 403 and json.loads(data)["error"]["code"] == "host_not_allowed", (st, data)
    st, _, data = raw("POST", "/v1/completions", host="evil.example:%d" % URL.port,
                      body=json.dumps({"model": MODEL, "prompt": "hi", "max_tokens": 2}).encode())
    assert st == 403, st
    for ok_host in ("localhost:%d" % URL.port, "127.0.0.1:%d" % URL.port, "[::1]:%d" % URL.port, "LOCALHOST"):
        st, _, _ = raw("GET", "/v1/models", host=ok_host)
        assert st == 200, (ok_host, st)
    for bad_host in ("127.0.0.1.evil.example", "localhost.evil.example:80", "", "::1", "[::1"):
        st, _, _ = raw("GET", "/v1/models", host=bad_host)
        assert st in (400, 403), (bad_host, st)  # 400: MHD refuses an empty Host itself
    st, hdrs, _ = raw("GET", "/v1/models", headers={"Origin": "http://evil.example"})
    assert st == 403 and "access-control-allow-origin" not in hdrs, (st, hdrs)
    still_serving()


def t_concurrent():
    """8 requests at once (more than the slots): all succeed, and each greedy answer is the one it gets alone.
    cache_prompt false (llama-server's extension): every prompt evaluated whole, so only the batching differs."""
    prompts = [f"Story number {i}: Once upon a time" for i in range(8)]
    nocache = {"cache_prompt": False}
    alone = [oa.completions.create(model=MODEL, prompt=p, max_tokens=12, temperature=0, extra_body=nocache).choices[0].text
             for p in prompts]
    out, errs = [None] * 8, []

    def go(i):
        try:
            out[i] = oa.completions.create(model=MODEL, prompt=prompts[i], max_tokens=12, temperature=0,
                                           extra_body=nocache).choices[0].text
        except Exception as e:  # noqa: BLE001
            errs.append(repr(e))

    ts = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errs, errs
    assert all(o for o in out), out
    assert out == alone, [(a, b) for a, b in zip(out, alone) if a != b]


def t_disconnect():
    """A client that leaves mid-stream frees its slot at once."""
    c = http.client.HTTPConnection(URL.hostname, URL.port, timeout=60)
    body = json.dumps({"model": MODEL, "prompt": "Once upon a time", "max_tokens": 400, "stream": True,
                       "temperature": 0.8})
    c.request("POST", "/v1/completions", body=body, headers={"Authorization": f"Bearer {KEY}"})
    r = c.getresponse()
    assert r.status == 200
    assert r.readline().startswith(b"data: ")  # the first event arrived: the slot is generating
    assert metric("llmlab_slots_busy") >= 1
    c.sock.shutdown(2)
    c.close()
    t0 = time.time()
    while metric("llmlab_slots_busy") > 0:
        assert time.time() - t0 < 3, "the slot was not freed within 3 s"
        time.sleep(0.01)
    print(f"# note: the slot was free {(time.time() - t0) * 1e3:.0f} ms after the client closed its connection")
    still_serving()


for name, fn in [("GET /v1/models lists the one model; /v1/models/{id} finds it, 404 for another", t_models),
                 ("chat completion (openai client): content, finish_reason, usage adds up", t_chat),
                 ("chat streaming: same text, one finish_reason, usage chunk matches", t_chat_stream),
                 ("completion: max_tokens 10 -> finish length, 10 completion tokens; streamed the same", t_completion),
                 ("stop sequences (string and list, streamed or not): cut before, never emitted", t_stop),
                 ("same seed, same sample", t_seed),
                 ("ollama client chat (and streamed): the same greedy answer and counts, durations in ns", t_ollama_chat),
                 ("ollama generate raw, /api/tags, /api/version", t_ollama_generate_tags),
                 ("wrong API key -> 401 (server keeps serving)", t_wrong_key),
                 ("malformed JSON -> 400 in each API's shape (server keeps serving)", t_malformed),
                 ("negative max_tokens and out-of-range fields -> 400 naming the field", t_negative_max_tokens),
                 ("10 MB body -> 413 (server keeps serving)", t_big_body),
                 ("unknown model -> 404 (openai and ollama clients)", t_unknown_model),
                 ("Host: evil.example -> 403; foreign Origin refused without --cors-origin", t_host),
                 ("8 concurrent requests all answered; greedy output the same as alone", t_concurrent),
                 ("a client that disconnects mid-stream frees its slot", t_disconnect)]:
    check(name, fn)

print(f"1..{n}")
print(f"{n_ok} passed, {n_fail} failed")
sys.exit(1 if n_fail else 0)
