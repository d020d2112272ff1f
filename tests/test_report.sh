#!/bin/sh
# test_report.sh — `llmlab fit` and `llmlab report` as a user meets them: fit on a preset prints the hand-checked
# byte counts, report on a fixture folder writes REPORT.md and report.html, and (when chromium is installed) the
# HTML renders headless to a PNG that is not blank. TAP output for tests/run.sh.
bin="${LLMLAB_BIN:-build/llmlab}"
ex="$LLMLAB_EXEC"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do echo "#   $l"; done; }
skip() { n=$((n + 1)); echo "ok $n # SKIP $1"; echo "# skip: $1"; }
L() { $ex "$bin" "$@"; }

# fit: Mistral-7B F16 weights = 7241465856 x 2 + 266240 x 4 bytes; KV at 4096 = 2 x 32 x 4096 x 1024 x 4.
L fit --arch mistral-7b --mem 8000000000 --hw "$tmp/nohw" >"$tmp/fit" 2>&1; rc=$?
if [ $rc -eq 0 ] && grep -q "(14483996672 bytes)" "$tmp/fit" && grep -q "(536870912 bytes)" "$tmp/fit" \
    && grep -q "DOES NOT FIT" "$tmp/fit" && grep -q "best type that fits at context 4096: Q6_K" "$tmp/fit"; then
    ok "fit --arch mistral-7b: bytes, verdict and best type"
else notok "fit --arch mistral-7b" "exit $rc" "$(head -c 600 "$tmp/fit")"; fi
L fit --arch nosuch >"$tmp/out" 2>&1; rc=$?
[ $rc -eq 1 ] && grep -q "unknown --arch 'nosuch'" "$tmp/out" && ok "fit refuses an unknown preset" || notok "fit unknown preset" "$(cat "$tmp/out")"
L report "$tmp/empty" >"$tmp/out" 2>&1; rc=$?
[ $rc -eq 1 ] && grep -q "no results JSON" "$tmp/out" && ok "report on an empty folder says what to run" || notok "report empty" "$(cat "$tmp/out")"

# A fixture results folder (what bench hw and bench model write).
r="$tmp/res"; mkdir -p "$r"
cat >"$r/memory.json" <<'J'
{"schema":"llmlab.memory/1","machine":{"hostname":"fixture","cpu_model":"Fixture CPU","logical_cores":2,"mem_total_bytes":25769803776},
 "results":[{"device":"cpu","kind":"read","threads":1,"array_bytes":536870912,"gbps":25.8,"impl":"avx512"},
            {"device":"cpu","kind":"read","threads":2,"array_bytes":536870912,"gbps":32.3,"impl":"avx512"}],"notes":[]}
J
cat >"$r/gemm.json" <<'J'
{"schema":"llmlab.gemm/1","results":[{"device":"cpu","dtype":"fp32","impl":"engine ll_matmul","m":1024,"tflops":0.09},
 {"device":"cpu","dtype":"fp32","impl":"engine ll_matmul","m":2048,"tflops":0.11}],"notes":[]}
J
cat >"$r/model.json" <<'J'
{"schema":"llmlab.model/1","machine":{"hostname":"fixture","logical_cores":2,"mem_total_bytes":25769803776},
 "ceilings":{"cpu":{"read_gbps":32.3,"gemm_gflops":110}},
 "results":[{"model":"llama-1B","type":"Q4_K_M","backend":"cpu","params":1.2e9,"size_bytes":800000000,"weight_bytes":700000000,
   "memory":{"weights_bytes":800000000,"kv_bytes":134217728,"kv_n_ctx":512,"kv_type":"F32","activations_bytes":1000000,"peak_rss_bytes":900000000},
   "load":{"cold_s":0.9,"warm_s":0.1},
   "tests":[{"test":"pp128","n_depth":0,"threads":2,"ts":{"median":119,"mean":119,"sd":2},"roofline":{"bound":"compute","arithmetic_intensity":400,"achieved_gflops":290,"pct_of_ceiling":26}},
            {"test":"tg32","n_depth":0,"threads":2,"ts":{"median":46,"mean":46,"sd":1},"roofline":{"bound":"memory","arithmetic_intensity":3.4,"achieved_gflops":110,"achieved_gbps":32.2,"pct_of_ceiling":99.7}}]}],"notes":[]}
J
L report "$r" -o "$tmp/rep" >"$tmp/out" 2>&1; rc=$?
if [ $rc -eq 0 ] && grep -q "| llmlab cpu (2 threads) | llama-1B | Q4_K_M | 890.9 MiB | 119.0 pp128 | 46.0 tg32 | 26.0% | 99.7% |" "$tmp/rep/REPORT.md"; then
    ok "report: REPORT.md has the summary row"
else notok "report summary row" "exit $rc" "$(cat "$tmp/out")" "$(grep -m3 llama "$tmp/rep/REPORT.md")"; fi
svgs=$(grep -o "<svg" "$tmp/rep/report.html" | wc -l)
[ "$svgs" -ge 5 ] && ! grep -q "<script" "$tmp/rep/report.html" && ok "report.html: $svgs inline SVG figures, no script" \
    || notok "report.html figures" "svg count $svgs"

# Ctrl-C: `llmlab bench` on a tiny synthetic model with 1000 repetitions, interrupted after 3 s, must exit 130
# and leave valid results (model.json marked partial, run.json "interrupted"), a report that says it is partial,
# and no temporary files (results folder or TMPDIR).
L synth --arch tiny --type F16 --vocab builtin --quiet -o "$tmp/tiny.gguf" >/dev/null 2>&1
# fit on a file: the calibrated engine prediction, its source and one line per (type, shape) it timed.
L fit "$tmp/tiny.gguf" -t 1 --hw "$r" >"$tmp/fitf" 2>&1; rc=$?
if [ $rc -eq 0 ] && grep -q "^predicted generation: [0-9.]* t/s engine" "$tmp/fitf" && grep -q "^engine: calibration: one-token ll_matmul" "$tmp/fitf" \
    && grep -q "t/s bound (32.3 GB/s" "$tmp/fitf" && grep -q "^  F16 .* us per call" "$tmp/fitf"; then
    ok "fit FILE: calibrated engine prediction beside the bandwidth bound"
else notok "fit FILE calibration" "exit $rc" "$(head -c 800 "$tmp/fitf")"; fi
L fit "$tmp/tiny.gguf" --no-calib --hw "$r" >"$tmp/fitf" 2>&1 && ! grep -q "t/s engine" "$tmp/fitf" && ok "fit --no-calib: bounds only" \
    || notok "fit --no-calib" "$(cat "$tmp/fitf")"
ri="$tmp/int"; mkdir -p "$ri" "$tmp/tmpdir"; cp "$r/memory.json" "$r/gemm.json" "$ri/"
TMPDIR="$tmp/tmpdir" $ex "$bin" bench -m "$tmp/tiny.gguf" --hw "$ri" --json "$ri" -p 64 -n 256 -r 1000 -t 1 --no-cold \
    >"$tmp/int.out" 2>"$tmp/int.err" &
pid=$!
sleep 3
kill -INT $pid
wait $pid; rc=$?
leftover=$(ls -A "$tmp/tmpdir"; ls -a "$ri" | grep '\.tmp\.')
if [ $rc -eq 130 ] && grep -q "PARTIAL REPORT: the \`llmlab bench\` run started .* was interrupted (Ctrl-C)" "$ri/REPORT.md" \
    && grep -q "PARTIAL REPORT" "$ri/report.html" && grep -q '"status":[[:space:]]*"interrupted"' "$ri/run.json" \
    && grep -q '"partial":[[:space:]]*true' "$ri/model.json" && grep -q '"schema":[[:space:]]*"llmlab.model/1"' "$ri/model.json" \
    && [ -z "$leftover" ]; then
    ok "Ctrl-C during bench: exit 130, partial model.json and run.json, report says PARTIAL, no temporary files"
else notok "Ctrl-C during bench" "exit $rc" "leftover: $leftover" "$(tail -3 "$tmp/int.err")" "$(grep -m2 PARTIAL "$ri/REPORT.md")"; fi
L report "$ri" -o "$tmp/rep2" >/dev/null 2>&1 && grep -q "PARTIAL" "$tmp/rep2/REPORT.md" && ok "llmlab report reads the partial results again" \
    || notok "report of partial results" "$(cat "$ri/run.json")"

# Render it headless when a browser is here.
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome)
if [ -z "$browser" ]; then
    skip "chromium not installed"
else
    png="$tmp/shot.png"
    timeout 60 "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --screenshot="$png" --window-size=1200,2000 \
        "file://$tmp/rep/report.html" >"$tmp/chrome.log" 2>&1
    # Not blank: the PNG exists, is large enough to hold drawn content, and a blank 1200x2000 page compresses far smaller.
    sz=$(wc -c <"$png" 2>/dev/null || echo 0)
    if [ "$sz" -gt 40000 ] && [ "$(head -c 8 "$png" | od -An -c | tr -d ' ')" = "211PNG\r\n032\n" ]; then
        ok "report.html renders in $(basename "$browser") ($sz bytes of PNG)"
    else notok "headless render" "PNG size $sz" "$(tail -3 "$tmp/chrome.log")"; fi
fi
echo "1..$n"
