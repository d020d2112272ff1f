#!/bin/sh
# Runs every test program in DIR (cmocka, TAP output) and every tests/test_*.sh, then prints the totals.
# Usage: tests/run.sh BUILD/tests [RUNNER...]   (RUNNER: e.g. qemu-aarch64 -L /usr/aarch64-linux-gnu)
# A program that crashes or exits non-zero without reporting a failure counts as one failure.
dir=$1; shift
runner="$*"
export LLMLAB_EXEC="$runner"
export CMOCKA_MESSAGE_OUTPUT=TAP
pass=0; fail=0; skip=0; failed_names=""
log=$(mktemp); trap 'rm -f "$log"' EXIT
for t in "$dir"/test_* tests/test_*.sh; do
    [ -f "$t" ] || continue
    case "$t" in *.d) continue;; esac
    name=$(basename "$t")
    case "$t" in
        *.sh) sh "$t" >"$log" 2>&1; rc=$? ;;
        *) [ -x "$t" ] || continue; $runner "$t" >"$log" 2>&1; rc=$? ;;
    esac
    p=$(grep -cE '^ok [0-9]+' "$log"); s=$(grep -cE '^(not )?ok [0-9]+ # SKIP' "$log")
    f=$(grep -E '^not ok [0-9]+' "$log" | grep -cv '# SKIP')
    p=$((p - $(grep -cE '^ok [0-9]+ # SKIP' "$log")))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "$name: exited with status $rc without a failed test (crash?)"; fi
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
    if [ "$f" -ne 0 ] || [ -n "$VERBOSE" ]; then cat "$log"; failed_names="$failed_names $name"; fi
    grep -E '^# (skip|SKIP|note)' "$log" | sed "s/^/$name: /"
    printf '%-28s %3d passed, %d failed, %d skipped\n' "$name" "$p" "$f" "$s"
done
[ -n "$failed_names" ] && echo "failing:$failed_names"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
