#!/bin/sh
# test_reliability.sh — the `llmlab` command under hostile conditions (issue 24): thread counts against the CPUs
# this process may use, a FIFO as a model, an output path that names the input another way, interruption of
# writers (no temporary file left, exit 130) and stale temporary files of dead processes.
# TAP output for tests/run.sh. Needs LLMLAB_BIN, LLMLAB_EXEC (runner prefix) and LLMLAB_SHARED.
bin="${LLMLAB_BIN:-build/llmlab}"
ex="$LLMLAB_EXEC"
shared="${LLMLAB_SHARED:-../shared}"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do echo "#   $l"; done; }
skip() { n=$((n + 1)); echo "ok $n # SKIP $1"; echo "# skip: $1"; }
L() { $ex "$bin" "$@"; }

m="$shared/models/stories260K.gguf"
b="$shared/models/stories260K.bin"; tk="$shared/models/tok512.bin"
v="$shared/models/vocab/ggml-vocab-llama-spm.gguf"

# ---- threads -------------------------------------------------------------------------------------------------
if [ ! -f "$m" ]; then
    skip "stories260K not found under LLMLAB_SHARED ($shared): thread tests skipped"
elif ! command -v taskset >/dev/null 2>&1 || [ -n "$ex" ]; then
    skip "taskset missing (or an emulator): thread tests skipped"
else
    taskset -c 0 $bin run -m "$m" -p "Once" -n 4 --temp 0 --verbose >"$tmp/out" 2>"$tmp/err"; rc=$?
    [ $rc -eq 0 ] && grep -q "^threads: 1 (this process may use 1 CPU)" "$tmp/err" && ok "taskset -c 0: the default is 1 thread" \
        || notok "taskset -c 0 default threads" "exit $rc" "$(head -3 "$tmp/err")"
    taskset -c 0 $bin run -m "$m" -p "Once" -n 4 --temp 0 -t 3 >"$tmp/out3" 2>"$tmp/err"; rc=$?
    [ $rc -eq 0 ] && [ "$(grep -c "is more than the 1 CPU" "$tmp/err")" -eq 1 ] && ok "-t 3 on 1 CPU runs and warns once" \
        || notok "-t 3 on 1 CPU" "exit $rc" "$(head -3 "$tmp/err")"
    $bin run -m "$m" -p "Once" -n 4 --temp 0 -t 3 >"$tmp/out3b" 2>/dev/null
    cmp -s "$tmp/out3" "$tmp/out3b" && ok "-t 3 on 1 CPU generates what -t 3 does on all CPUs" || notok "-t 3 output differs"
    taskset -c 0 $bin run -m "$m" -p "Once" -n 4 -t 5 >"$tmp/out" 2>"$tmp/err"; rc=$?
    [ $rc -eq 1 ] && grep -q "\-t 5 is too many: this process may use 1 CPU" "$tmp/err" && ok "-t above 4x the CPUs is refused" \
        || notok "-t 5 on 1 CPU" "exit $rc" "$(head -3 "$tmp/err")"
    L run -m "$m" -p "Once" -n 4 -t 1025 >"$tmp/out" 2>"$tmp/err"; rc=$?
    [ $rc -eq 1 ] && grep -q "too many" "$tmp/err" && ok "-t 1025 is refused" || notok "-t 1025" "exit $rc" "$(head -3 "$tmp/err")"
fi

# ---- a FIFO (or a directory) as the model: an error at once, not a hang -------------------------------------
if mkfifo "$tmp/fifo" 2>/dev/null; then
    for c in "run -m" "quantize" "convert"; do
        extra=""; [ "$c" = quantize ] && extra="$tmp/q.gguf Q8_0"; [ "$c" = convert ] && extra="-o $tmp/c.gguf"
        timeout 1 $ex $bin $c "$tmp/fifo" $extra >"$tmp/out" 2>"$tmp/err"; rc=$?
        [ $rc -eq 1 ] && grep -q "fifo.*not a regular file" "$tmp/err" && ok "$c FIFO: a clear error within a second" \
            || notok "$c FIFO" "exit $rc (124 = hung)" "$(cat "$tmp/err")"
    done
else
    skip "mkfifo failed: FIFO tests skipped"
fi
timeout 1 $ex $bin run -m "$tmp" >"$tmp/out" 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q "not a regular file (a directory)" "$tmp/err" && ok "a directory as -m is a clear error" || notok "dir as -m" "exit $rc" "$(cat "$tmp/err")"

# ---- an output that is an input under another name ----------------------------------------------------------
if [ -f "$b" ] && [ -f "$tk" ]; then
    mkdir -p "$tmp/d" && cp "$b" "$tmp/d/self.bin" && cp "$tk" "$tmp/d/tok.bin"
    L convert "$tmp/d/self.bin" --tokenizer "$tmp/d/tok.bin" -o "$tmp/d/./self.bin" >"$tmp/out" 2>"$tmp/err"; rc=$?
    [ $rc -eq 1 ] && grep -q "is the input file" "$tmp/err" && cmp -s "$b" "$tmp/d/self.bin" \
        && ok "convert refuses d/./self.bin as the output of d/self.bin; the input is intact" || notok "convert self-overwrite" "exit $rc" "$(cat "$tmp/err")"
    ln "$tmp/d/tok.bin" "$tmp/d/tok-link.bin"
    L convert "$tmp/d/self.bin" --tokenizer "$tmp/d/tok.bin" -o "$tmp/d/tok-link.bin" >"$tmp/out" 2>"$tmp/err"; rc=$?
    [ $rc -eq 1 ] && grep -q "is the input file" "$tmp/err" && cmp -s "$tk" "$tmp/d/tok.bin" \
        && ok "convert refuses a hard link to its tokenizer as the output" || notok "convert onto the tokenizer" "exit $rc" "$(cat "$tmp/err")"
else
    skip "stories260K.bin / tok512.bin not found: convert tests skipped"
fi
if [ -f "$v" ]; then
    cp "$v" "$tmp/vocab.gguf"
    L synth --arch tiny --vocab "$tmp/vocab.gguf" --quiet -o "$tmp/./vocab.gguf" >"$tmp/out" 2>"$tmp/err"; rc=$?
    [ $rc -eq 1 ] && grep -q "is the --vocab file" "$tmp/err" && cmp -s "$v" "$tmp/vocab.gguf" \
        && ok "synth refuses its --vocab file as the output" || notok "synth onto --vocab" "exit $rc" "$(cat "$tmp/err")"
else
    skip "vocab GGUF not found: synth tests skipped"
fi

echo "1..$n"
