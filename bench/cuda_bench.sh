#!/bin/sh
# cuda_bench.sh — the CUDA backend in one device call: build with CUDA, run tests/test_cuda, write synthetic
# Mistral-7B files (F16; Q8_0, Q4_0, Q4_K_M when `llmlab quantize` exists), time pp512/tg128, print a table.
#
# Usage: sh bench/cuda_bench.sh SHARED_DIR        (SHARED_DIR holds models/vocab/ggml-vocab-llama-spm.gguf
#                                                  and golden/; carry it with the call)
# Env:   OUT=dir (logs; default $OUT or /tmp/cuda_bench), WORK=dir (model files, ~31 GB; default /tmp/llmlab-7b),
#        STAGES="build test synth quant bench" (a subset splits the work over several calls while the machine
#        stays warm: the build dir and WORK survive; extra stages: "sanitize" = test_cuda under compute-sanitizer
#        memcheck, "ncu" = per-kernel DRAM throughput of decode matvecs), TYPES="F16 Q8_0 Q4_0 Q4_K_M", REPS=3,
#        BW=2990 (GB/s: the H100's measured HBM read, ../shared/BENCHMARKS.md).
set -eu
SHARED=${1:?usage: sh bench/cuda_bench.sh SHARED_DIR}
SHARED=$(cd "$SHARED" && pwd)
OUT=${OUT:-/tmp/cuda_bench}
WORK=${WORK:-/tmp/llmlab-7b}
STAGES=${STAGES:-build test synth quant bench}
TYPES=${TYPES:-F16 Q8_0 Q4_0 Q4_K_M}
REPS=${REPS:-3}
BW=${BW:-2990}
BUILD=build
mkdir -p "$OUT" "$WORK"
has() { case " $STAGES " in *" $1 "*) return 0 ;; esac; return 1; }
say() { printf '== %s (%s)\n' "$*" "$(date +%H:%M:%S)"; }

nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt" || true

if has build; then
    say "build (sm_90 only, to save time)"
    make -j16 BUILD=$BUILD NVCC_ARCH="-gencode=arch=compute_90,code=sm_90" all bench $BUILD/tests/test_cuda \
        >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
fi

if has test; then
    say "tests/test_cuda"
    LLMLAB_SHARED="$SHARED" timeout 300 $BUILD/tests/test_cuda 2>&1 | tee "$OUT/test_cuda.txt" \
        | grep -E "^\[|# note|# skip|FAIL|NMSE|panic|cuda:" || true
fi

if has sanitize; then
    say "compute-sanitizer memcheck tests/test_cuda"
    LLMLAB_SHARED="$SHARED" timeout 400 compute-sanitizer --tool memcheck --error-exitcode 9 $BUILD/tests/test_cuda \
        >"$OUT/sanitize.txt" 2>&1; echo "memcheck exit $?"
    grep -E "ERROR SUMMARY|Invalid|out of bounds" "$OUT/sanitize.txt" | head -20 || true
fi

VOCAB="$SHARED/models/vocab/ggml-vocab-llama-spm.gguf"
F16="$WORK/mistral-7b-F16.gguf"
if has synth && [ ! -s "$F16" ]; then
    say "synth mistral-7b F16"
    $BUILD/llmlab synth --arch mistral-7b --type F16 --vocab "$VOCAB" -o "$F16" --quiet >"$OUT/synth.log" 2>&1 \
        || { tail -20 "$OUT/synth.log"; exit 1; }
fi

if has quant; then
    if $BUILD/llmlab quantize 2>&1 | grep -q "usage: llmlab quantize"; then
        for t in $TYPES; do
            [ "$t" = F16 ] && continue
            f="$WORK/mistral-7b-$t.gguf"
            [ -s "$f" ] && continue
            say "quantize $t"
            $BUILD/llmlab quantize "$F16" "$f" "$t" 16 >"$OUT/quant-$t.log" 2>&1 || { tail -20 "$OUT/quant-$t.log"; exit 1; }
        done
    else
        say "no llmlab quantize in this build: F16 only"
    fi
fi

if has bench; then
    : >"$OUT/table.txt"
    for t in $TYPES; do
        f="$WORK/mistral-7b-$t.gguf"
        [ -s "$f" ] || { echo "$t: no file" >>"$OUT/table.txt"; continue; }
        say "llmlab run $t on cuda: upload rate, 16 tokens"
        timeout 120 $BUILD/llmlab run -m "$f" --device cuda --verbose -c 512 -n 16 --temp 0 -p "Once upon a time" \
            >"$OUT/run-$t.txt" 2>&1 || tail -5 "$OUT/run-$t.txt"
        grep -E "cuda:" "$OUT/run-$t.txt" || true
        say "bench_engine $t (device auto = CUDA when a GPU answers)"
        $BUILD/bench/bench_engine -m "$f" -p 512 -n 128 -r "$REPS" --bw "$BW" >"$OUT/bench-$t.txt" 2>&1 \
            || { tail -20 "$OUT/bench-$t.txt"; continue; }
        pp=$(awk '/^pp512/ {print $2}' "$OUT/bench-$t.txt")
        tg=$(awk '/^tg128/ {print $2}' "$OUT/bench-$t.txt")
        frac=$(sed -n 's/.*, \([0-9]*%\) of.*/\1/p' "$OUT/bench-$t.txt")
        size=$(du -h "$f" | cut -f1)
        printf '%-7s %6s  pp512 %10s t/s  tg128 %8s t/s  %s of %s GB/s\n' "$t" "$size" "$pp" "$tg" "$frac" "$BW" \
            >>"$OUT/table.txt"
    done
fi

# Per-kernel DRAM throughput (% of peak) of the decode matvecs: the >= 75% target on 4096x14336 (ffn_down is
# 4096 rows of 14336, gate/up 14336 rows of 4096). ncu needs --clock-control none (leave the clocks alone).
if has ncu; then
    for t in $TYPES; do
        f="$WORK/mistral-7b-$t.gguf"
        [ -s "$f" ] || continue
        say "ncu decode kernels $t"
        timeout 300 ncu --clock-control none --kernel-name regex:'k_matvec|k_attn' --launch-skip 400 --launch-count 40 \
            --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed \
            $BUILD/bench/bench_engine -m "$f" -p 8 -n 8 -r 1 >"$OUT/ncu-$t.txt" 2>&1 || tail -5 "$OUT/ncu-$t.txt"
        grep -E "k_matvec|k_attn|dram__throughput|gpu__time_duration|dram__bytes_read" "$OUT/ncu-$t.txt" | head -60
    done
fi

# ---- PLACEHOLDER: llama.cpp's llama-bench on the same files (a later step) ---------------------------------
# Build llama.cpp from the llama-cpp-python sdist (vendor/llama.cpp) OUTSIDE the repository:
#   cmake -B $WORK/lcpp -S <sdist>/vendor/llama.cpp -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 && cmake --build ... -j15
#   $WORK/lcpp/bin/llama-bench -m $WORK/mistral-7b-$t.gguf -p 512 -n 128 -ngl 99 -fa 1 -r $REPS
# and add its rows to the table (the peer figure from the same run, same file).

say "summary (peer numbers from ../shared/BENCHMARKS.md, llama.cpp b10587 on H100: pp512 / tg128 t/s)"
echo "llama.cpp: F16 19436 / 173, Q8_0 10832 / 240, Q4_0 10823 / 336, Q4_K_M 9302 / 273"
[ -f "$OUT/table.txt" ] && cat "$OUT/table.txt"
grep -E "^\[  (PASSED|FAILED|SKIPPED) " "$OUT/test_cuda.txt" 2>/dev/null || true
