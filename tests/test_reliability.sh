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

# ---- messages ------------------------------------------------------------------------------------------------
echo "some text" >"$tmp/t.txt"
L perplexity -m "$tmp/none.gguf" -f "$tmp/t.txt" >"$tmp/out" 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && [ "$(grep -o "none.gguf" "$tmp/err" | wc -l)" -eq 1 ] && ok "perplexity names a missing model once" \
    || notok "perplexity path twice" "exit $rc" "$(cat "$tmp/err")"

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

# ---- interrupted writers: no temporary file left, exit 128 + signal; stale ones of dead processes swept -------
# $dfl CMD: run CMD with SIGINT at its default action (a shell's background job inherits it ignored). Not a
# function: $! must be the program's PID, not a subshell's.
dfl="python3 -c"
dflpy='import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])'
# wait_tmp OUT: until OUT.tmp.* exists (at most ~10 s); false if it never did.
wait_tmp() { i=0; while [ $i -lt 1000 ]; do ls "$1".tmp.* >/dev/null 2>&1 && return 0; sleep 0.01; i=$((i + 1)); done; return 1; }
big="synth --arch llama-3.2-1b --layers 3 --type F32 --vocab builtin --quiet"
if ! command -v python3 >/dev/null 2>&1 || [ -n "$ex" ]; then
    skip "python3 missing (or an emulator): interruption tests skipped"
else
    for sig in INT TERM; do
        want=130; [ $sig = TERM ] && want=143
        o="$tmp/int$sig.gguf"
        $dfl "$dflpy" $bin $big -o "$o" >/dev/null 2>&1 & pid=$!
        if wait_tmp "$o"; then kill -$sig $pid; wait $pid; rc=$?; else wait $pid; rc=-1; fi
        left=$(ls "$o"* 2>/dev/null)
        [ $rc -eq $want ] && [ -z "$left" ] && ok "SIG$sig during synth: exit $want, no temporary file, no output" \
            || notok "SIG$sig during synth" "exit $rc (want $want; -1: finished before the signal)" "left: $left"
    done
    L synth --arch smollm-135m --layers 12 --type F32 --vocab builtin --quiet -o "$tmp/q-in.gguf" >/dev/null 2>&1
    o="$tmp/q.gguf"; echo "previous" >"$o"
    $dfl "$dflpy" $bin quantize "$tmp/q-in.gguf" "$o" Q4_K -t 1 >/dev/null 2>"$tmp/err" & pid=$!
    # a race on a fast machine: only a run that the signal reached is judged
    wait_tmp "$o" && kill -INT $pid 2>/dev/null; wait $pid; rc=$?
    left=$(ls "$o".tmp.* 2>/dev/null)
    if [ $rc -eq 0 ]; then skip "quantize finished before SIGINT reached it"
    else [ $rc -eq 130 ] && [ -z "$left" ] && [ "$(cat "$o")" = previous ] && ok "SIGINT during quantize: exit 130, no temporary file, previous file intact" \
        || notok "SIGINT during quantize" "exit $rc" "left: $left" "$(cat "$tmp/err")"; fi

    sm="$shared/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    if [ -f "$sm" ]; then
        $bin run -m "$sm" -p "Once upon a time" -n 100000 --ignore-eos -c 4096 -t 1 >"$tmp/out" 2>"$tmp/err" & pid=$!
        sleep 2; kill -INT $pid; wait $pid; rc=$?
        [ $rc -eq 130 ] && grep -q "generation: [0-9]* tokens" "$tmp/err" && ok "Ctrl-C during run: the statistics, then exit 130" \
            || notok "Ctrl-C during run" "exit $rc" "$(tail -2 "$tmp/err")"
    else
        skip "SmolLM2 not found: run Ctrl-C test skipped"
    fi

    o="$tmp/k9.gguf"
    $bin $big -o "$o" >/dev/null 2>&1 & pid=$!
    if wait_tmp "$o"; then kill -9 $pid; wait $pid; fi
    stale=$(ls "$o".tmp.* 2>/dev/null)
    sh -c 'exit 0' & dead=$!; wait $dead
    echo junk >"$o.tmp.$dead"                 # a dead PID's leftover
    echo live >"$o.tmp.$$"                    # a live process's (this shell): kept
    L synth --arch tiny --vocab builtin --quiet -o "$o" >/dev/null 2>"$tmp/err"; rc=$?
    [ $rc -eq 0 ] && [ -n "$stale" ] && [ ! -e "$stale" ] && [ ! -e "$o.tmp.$dead" ] && [ -e "$o.tmp.$$" ] \
        && grep -q "removed .*k9.gguf.tmp.$dead, a temporary file left by process $dead" "$tmp/err" \
        && ok "after kill -9 of synth, the next synth to that path removes the stale temporary files (not a live one)" \
        || notok "stale temporary files" "exit $rc, stale '$stale'" "$(ls "$tmp" | grep k9)" "$(cat "$tmp/err")"
fi

echo "1..$n"
