#!/bin/sh
# test_cli.sh — the `llmlab` command as a user meets it: help texts, exit codes and messages for bad input,
# stdout carrying only generated text, determinism of --seed, --stop, Ctrl-C (status 130 and statistics), llama2.c
# input, convert, chat over a pipe, synth.
# TAP output for tests/run.sh. Needs LLMLAB_BIN (the binary), LLMLAB_EXEC (runner prefix, e.g. qemu) and
# LLMLAB_SHARED.
bin="${LLMLAB_BIN:-build/llmlab}"
ex="$LLMLAB_EXEC"
shared="${LLMLAB_SHARED:-../shared}"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do echo "#   $l"; done; }
skip() { n=$((n + 1)); echo "ok $n # SKIP $1"; echo "# skip: $1"; }
L() { $ex "$bin" "$@"; }
# sigint SECS ARGS...: llmlab ARGS, sent SIGINT (Ctrl-C) after SECS (KILL 30 s later if still running); its status.
sigint() { t=$1; shift; timeout --preserve-status -k 30 -s INT "$t" $ex "$bin" "$@"; }

# expect RC "desc" PATTERN cmd...: exit status RC and stderr/stdout matching PATTERN (grep -E), no crash.
expect() {
    rc_want=$1; desc=$2; pat=$3; shift 3
    L "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?
    if [ "$rc" -eq "$rc_want" ] && cat "$tmp/out" "$tmp/err" | grep -qE -- "$pat"; then ok "$desc"
    else notok "$desc" "exit $rc (want $rc_want), pattern '$pat'" "$(head -c 400 "$tmp/err")"; fi
}

expect 0 "help lists the commands" "run .*generate" help
for c in $(L help | awk '/^commands:/{f=1;next} f&&NF{print $1}' | grep -v '^help$'); do
    expect 0 "$c --help" "usage: llmlab $c" "$c" --help
done
expect 1 "unknown command is refused" "unknown command 'frobnicate'" frobnicate
expect 1 "run without -m says so" "no model given" run -p hi
expect 1 "run with a missing file names it" "$tmp/nope.gguf: cannot open" run -m "$tmp/nope.gguf"
expect 1 "a bad number is refused" "-n expects an integer" run -m x -n abc
expect 1 "an unknown flag is refused" "unknown option '--bogus'" run --bogus

m="$shared/models/stories260K.gguf"
if [ ! -f "$m" ]; then
    skip "stories260K not found under LLMLAB_SHARED ($shared): model tests skipped"
else
    head -c 5000 "$m" >"$tmp/trunc.gguf"
    expect 1 "a truncated GGUF is a clear error" "trunc.gguf: .*(truncated|outside the file|end of file)" run -m "$tmp/trunc.gguf"
    printf 'GGUF\003\000\000\000' >"$tmp/short.gguf"
    expect 1 "a header cut short is a clear error" "short.gguf" run -m "$tmp/short.gguf"

    L run -m "$m" -p "Once upon a time" -n 40 --temp 0 >"$tmp/out" 2>"$tmp/err"; rc=$?
    if [ $rc -eq 0 ] && [ "$(head -c 40 "$tmp/out")" = ", there was a little girl named Lily. Sh" ] && ! grep -q "t/s" "$tmp/out" \
        && grep -q "generation: 40 tokens" "$tmp/err"; then ok "run: stdout is only the greedy continuation; stats on stderr"
    else notok "run: greedy continuation" "exit $rc" "$(head -c 200 "$tmp/out")" "$(tail -2 "$tmp/err")"; fi

    L run -m "$m" -p "Once upon a time" -n 5 --temp 0 --echo 2>/dev/null | head -c 17 >"$tmp/echo"
    [ "$(cat "$tmp/echo")" = "Once upon a time," ] && ok "run --echo prints the prompt first" || notok "run --echo" "$(cat "$tmp/echo")"

    L run -m "$m" -p "Lily" -n 30 --temp 1 --seed 7 >"$tmp/a" 2>/dev/null
    L run -m "$m" -p "Lily" -n 30 --temp 1 --seed 7 -t 1 >"$tmp/b" 2>/dev/null
    L run -m "$m" -p "Lily" -n 30 --temp 1 --seed 8 >"$tmp/c" 2>/dev/null
    if cmp -s "$tmp/a" "$tmp/b" && ! cmp -s "$tmp/a" "$tmp/c" && [ -s "$tmp/a" ]; then ok "same seed same text (any thread count), other seed other text"
    else notok "seed determinism" "$(cat "$tmp/a")" "$(cat "$tmp/b")" "$(cat "$tmp/c")"; fi

    L run -m "$m" -p "Once upon a time" -c 4 -n 5 >"$tmp/out" 2>"$tmp/err"; rc=$?
    [ $rc -eq 1 ] && grep -q "larger -c" "$tmp/err" && ok "a prompt longer than the context is refused" || notok "prompt vs -c" "$(cat "$tmp/err")"

    b="$shared/models/stories260K.bin"; tk="$shared/models/tok512.bin"
    L run -m "$b" --tokenizer "$tk" -p "Once upon a time" -n 40 --temp 0 >"$tmp/bin.txt" 2>/dev/null
    L run -m "$m" -p "Once upon a time" -n 40 --temp 0 >"$tmp/gguf.txt" 2>/dev/null
    cmp -s "$tmp/bin.txt" "$tmp/gguf.txt" && ok "llama2.c checkpoint runs like its GGUF" || notok "llama2.c run" "$(cat "$tmp/bin.txt")"
    expect 1 "llama2.c without its tokenizer says what to do" "tokenizer" run -m "$b" --tokenizer "$tmp/none.bin"

    L convert "$b" --tokenizer "$tk" -o "$tmp/conv.gguf" >/dev/null 2>&1
    L run -m "$tmp/conv.gguf" -p "Once upon a time" -n 40 --temp 0 >"$tmp/conv.txt" 2>/dev/null
    cmp -s "$tmp/conv.txt" "$tmp/gguf.txt" && ok "convert: the written GGUF generates the same text" || notok "convert" "$(cat "$tmp/conv.txt")"

    # --stop: the text ends right before the first stop string (across tokens), which is not printed
    L run -m "$m" -p "Once upon a time" -n 40 --temp 0 --stop zzz --stop "named Lily" >"$tmp/out" 2>"$tmp/err"; rc=$?
    if [ $rc -eq 0 ] && [ "$(cat "$tmp/out")" = ", there was a little girl " ] && grep -qE "generation: ([1-9]|[1-3][0-9]) tokens" "$tmp/err"
    then ok "run --stop (repeatable) ends before the stop string"
    else notok "run --stop" "exit $rc" "$(cat "$tmp/out")" "$(tail -1 "$tmp/err")"; fi
    expect 1 "an empty --stop is refused" "--stop takes 1 to" run -m "$m" --stop ""
    L run -m "$m" -p "Once upon a time" -n -1 --ignore-eos -c 16 >"$tmp/out" 2>"$tmp/err"; rc=$?
    [ $rc -eq 0 ] && grep -q "context full: 16 tokens" "$tmp/err" && grep -q "generation: 12 tokens" "$tmp/err" \
        && ok "run says when a full context ends generation" || notok "context full" "exit $rc" "$(cat "$tmp/err")"

    # Ctrl-C (SIGINT): generation stops, the statistics are printed, the exit status is 130. During generation
    # (a 64K context: minutes to fill), then during the prompt (10803 tokens: seconds on one thread).
    sigint 2 run -m "$m" -p "Once upon a time" -n -1 --ignore-eos -c 65536 -t 1 >"$tmp/out" 2>"$tmp/err"; rc=$?
    if [ $rc -eq 130 ] && [ -s "$tmp/out" ] && grep -qE "prompt: 5 tokens .* generation: [1-9][0-9]* tokens in" "$tmp/err"
    then ok "run: Ctrl-C during generation: statistics, exit status 130"
    else notok "run SIGINT during generation" "exit $rc (want 130)" "$(tail -2 "$tmp/err")"; fi
    awk 'BEGIN { for (i = 0; i < 1200; i++) printf "Lily went to the park. "; print "" }' >"$tmp/long.txt"
    sigint 2 run -m "$m" -f "$tmp/long.txt" -n 10 -c 16384 -t 1 >"$tmp/out" 2>"$tmp/err"; rc=$?
    if [ $rc -eq 130 ] && grep -qE "prompt: [0-9]+ of 10803 tokens in [0-9]+ ms \(interrupted\) \| generation: 0 tokens" "$tmp/err"
    then ok "run: Ctrl-C during the prompt: how much of it was evaluated, no false rate, exit status 130"
    else notok "run SIGINT during the prompt" "exit $rc (want 130)" "$(tail -2 "$tmp/err")"; fi
    sleep 5 | sigint 1 chat -m "$m" >"$tmp/out" 2>"$tmp/err"; rc=$?
    [ $rc -eq 130 ] && ok "chat: Ctrl-C at the prompt ends the session with status 130" || notok "chat SIGINT" "exit $rc (want 130)" "$(cat "$tmp/err")"

    printf 'Tell me a story\n/exit\n' | L chat -m "$m" -n 20 --temp 0 >"$tmp/chat" 2>"$tmp/chaterr"; rc=$?
    [ $rc -eq 0 ] && [ -s "$tmp/chat" ] && grep -q "template" "$tmp/chaterr" && ok "chat over a pipe answers and exits" || notok "chat" "exit $rc" "$(cat "$tmp/chaterr")"
fi

tl="$shared/golden/tiny-llama/tiny-llama-f16.gguf"
if [ -f "$tl" ]; then
    # 4 layers x 16M positions x 64 KV values x 2 x 4 bytes = 32 GiB of KV cache: refused before allocating.
    expect 1 "a context that cannot fit is refused with the numbers" "needs .*GiB of KV cache .* available" run -m "$tl" -c 16000000 --cache-type f32 -p hi
    L run -m "$tl" -p "The capital of France is" -n 4 --temp 0 --verbose >/dev/null 2>"$tmp/err"
    grep -q "memory plan (cpu): weights" "$tmp/err" && ok "--verbose prints the memory plan" || notok "--verbose plan" "$(cat "$tmp/err")"
else
    skip "tiny-llama golden not found: memory-plan tests skipped"
fi

v="$shared/models/vocab/ggml-vocab-llama-spm.gguf"
if [ -f "$v" ]; then
    L synth --arch tiny --type BF16 --vocab "$v" --quiet -o "$tmp/tiny.gguf" >/dev/null 2>&1
    L run -m "$tmp/tiny.gguf" -p "Hello world" -n 8 --seed 3 >"$tmp/out" 2>"$tmp/err"; rc=$?
    [ $rc -eq 0 ] && grep -q "generation: 8 tokens" "$tmp/err" && ok "synth writes a model that runs" || notok "synth + run" "$(cat "$tmp/err")"
else
    skip "vocab GGUF not found: synth run test skipped"
fi
# The main job's command: the quick full run writes the results and the report (native only: minutes under qemu).
if [ -z "$ex" ]; then
    TMPDIR="$tmp" LLMLAB_SHARED="$shared" L bench --quick --json "$tmp/res" >"$tmp/out" 2>"$tmp/err"; rc=$?
    if [ $rc -eq 0 ] && [ -s "$tmp/res/REPORT.md" ] && [ -s "$tmp/res/report.html" ] && [ -s "$tmp/res/model.json" ] \
        && grep -q "Q4_0" "$tmp/out" && ! ls -d "$tmp"/llmlab-bench-* >/dev/null 2>&1; then ok "bench --quick: hardware, synthetic model set, report; temporary models removed"
    else notok "bench --quick" "exit $rc" "$(tail -5 "$tmp/err")"; fi
else
    skip "bench --quick under an emulator (too slow): run natively"
fi
echo "1..$n"
