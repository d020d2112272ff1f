#!/bin/sh
# cuda_bench.sh — the CUDA backend in one device call: build with CUDA, run tests/test_cuda, write synthetic
# Mistral-7B files (F16; Q8_0, Q4_0, Q4_K_M when `llmlab quantize` exists), time pp512/tg128, print a table.
#
# Usage: sh bench/cuda_bench.sh SHARED_DIR        (SHARED_DIR holds models/vocab/ggml-vocab-llama-spm.gguf
#                                                  and golden/; carry it with the call; run tools/device-deps.sh
#                                                  here first and carry .ddeps too: the GPU machines lack cJSON
#                                                  and cmocka)
# Env:   OUT=dir (logs; default $OUT or /tmp/cuda_bench), WORK=dir (model files, ~31 GB; default /tmp/llmlab-7b),
#        STAGES="peer build test synth quant bench" (a subset splits the work over several calls while the machine
#        stays warm: the build dir and WORK survive; extra stages: "sanitize" = test_cuda under compute-sanitizer
#        memcheck, "ncu" = per-kernel DRAM throughput of decode matvecs, "variants" = pp512 and tg128 with the
#        tuning knobs (VARIANTS: env settings, comma-joined within one, space between; by default programmatic
#        dependent launch off, weight preload off, CUDA graphs off; VTYPES: the files), "prof" = GPU time per
#        kernel name of one pp512 and a few decode steps, through ncu (PTYPES), "dprof" = decode kernel by kernel
#        through ncu (DTYPES), "mv" = the decode matmuls alone per knob setting (MV_VARIANTS: settings,
#        comma-joined within one, space between), "sample" = tg128's sampling cost, on the device or off (SREPS), "depth" = tg128 after DEPTHS tokens of
#        context, both engines (DEPTH_TYPES, DREPS), "batched" = N parallel sequences, ours and llama-batched-bench
#        (BTYPES, NPL, BREPS), "mem4" = GPU memory of 4 contexts on one model (MTYPES)), OURS=0 / PEER=0: the
#        batched and depth stages without llmlab's / llama.cpp's runs,
#        TYPES="F16 Q8_0 Q4_0 Q4_K_M", REPS=3,
#        BW=2990 (GB/s: the H100's measured HBM read, ../shared/BENCHMARKS.md),
#        PEER_SRC=.peer/llama.cpp.tgz (llama.cpp's source, vendor/llama.cpp of the llama-cpp-python sdist, packed
#        outside the repository; the "peer" stage builds its llama-bench with CUDA in the background from the
#        start and runs it on the same files after ours).
set -eu
SHARED=${1:?usage: sh bench/cuda_bench.sh SHARED_DIR}
SHARED=$(cd "$SHARED" && pwd)
OUT=${OUT:-/tmp/cuda_bench}
WORK=${WORK:-/tmp/llmlab-7b}
STAGES=${STAGES:-build test synth quant bench}
TYPES=${TYPES:-F16 Q8_0 Q4_0 Q4_K_M}
REPS=${REPS:-3}
BW=${BW:-2990}
PEER_SRC=${PEER_SRC:-.peer/llama.cpp.tgz}
BUILD=build
mkdir -p "$OUT" "$WORK"
# cJSON and cmocka unpacked by tools/device-deps.sh (the GPU machines have neither and fetch nothing)
if [ -d .ddeps/root/usr/include ]; then
    D=$(pwd)/.ddeps/root
    export EXTRA_CFLAGS="-I$D/usr/include -L$D/usr/lib/x86_64-linux-gnu"
    export LD_LIBRARY_PATH="$D/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
has() { case " $STAGES " in *" $1 "*) return 0 ;; esac; return 1; }
say() { printf '== %s (%s)\n' "$*" "$(date +%H:%M:%S)"; }

nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt" || true

# Runs "$@" and writes to the file $PEAK the GPU memory it took at most (MiB: nvidia-smi's memory.used sampled
# every 0.2 s, less what was in use before it started; "?" without nvidia-smi). Returns the command's status.
gpu_used() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1 | tr -dc 0-9; }
peak_run() {
    base=$(gpu_used)
    "$@" &
    pid=$!
    peak=0
    while kill -0 "$pid" 2>/dev/null; do
        m=$(gpu_used)
        [ -n "$m" ] && [ "$m" -gt "$peak" ] && peak=$m
        sleep 0.2
    done
    rc=0
    wait "$pid" || rc=$?
    if [ -n "$base" ] && [ "$peak" -gt 0 ]; then echo $((peak - base)) >"$PEAK"; else echo "?" >"$PEAK"; fi
    return $rc
}

PEER_BIN="$WORK/lcpp/build/bin/llama-bench"
if has peer && [ ! -x "$PEER_BIN" ]; then
    if [ -s "$PEER_SRC" ]; then
        say "llama.cpp: building llama-bench with CUDA in the background (log: peer-build.log)"
        mkdir -p "$WORK/lcpp"
        rm -f "$WORK/lcpp/status"
        # its own session (setsid): a build still running when this call ends goes on for the next call
        SRC=$(cd "$(dirname "$PEER_SRC")" && pwd)/$(basename "$PEER_SRC")
        setsid sh -c "cd '$WORK/lcpp' && tar xzf '$SRC' && cmake -S llama.cpp -B build -G Ninja -DGGML_CUDA=ON \
            -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
            -DLLAMA_BUILD_SERVER=OFF -DCMAKE_BUILD_TYPE=Release && nice cmake --build build --target llama-bench llama-batched-bench -j 12 \
            && echo ok >status || echo failed >status" >"$WORK/lcpp-build.log" 2>&1 </dev/null &
    else
        say "no $PEER_SRC: llama.cpp is not built (pack vendor/llama.cpp of the llama-cpp-python sdist there)"
    fi
fi

if has build; then
    say "build (sm_90 only, to save time)"
    make -j8 BUILD=$BUILD NVCC_ARCH="-gencode=arch=compute_90,code=sm_90" all bench $BUILD/tests/test_cuda \
        $BUILD/tests/test_cuda_seq $BUILD/tests/test_backend_ops $BUILD/tests/test_backend_kv $BUILD/tests/test_engine \
        >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
fi

if has test; then
    # test_cuda_seq: several sequences, F16 caches, graphs per context; test_backend_*: the conformance suite;
    # test_engine: the batch API end to end (its contexts take the GPU: device auto)
    for t in test_cuda test_cuda_seq test_backend_kv test_backend_ops test_engine; do
        say "tests/$t"
        LLMLAB_SHARED="$SHARED" timeout 300 $BUILD/tests/$t 2>&1 | tee "$OUT/$t.txt" \
            | grep -E "^\[|# note|# skip|FAIL|NMSE|panic|cuda:|^(not )?ok" || true
    done
fi

if has sanitize; then
    for t in test_cuda test_cuda_seq; do
        say "compute-sanitizer memcheck tests/$t"
        LLMLAB_SHARED="$SHARED" timeout 400 compute-sanitizer --tool memcheck --error-exitcode 9 $BUILD/tests/$t \
            >"$OUT/sanitize-$t.txt" 2>&1; echo "memcheck exit $?"
        grep -E "ERROR SUMMARY|Invalid|out of bounds" "$OUT/sanitize-$t.txt" | head -20 || true
    done
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
    : >"$OUT/ours.tsv"
    # This GPU's HBM read in this run (the engine's read kernel, `bench hw`), beside BW from BENCHMARKS.md: H100s
    # of one kind differ by a few percent, so decode's fraction is given against both.
    say "HBM read on this GPU (llmlab bench hw --only memory)"
    timeout 150 $BUILD/llmlab bench hw --only memory -t 1 --json "$OUT/hw-mem" >"$OUT/hw-mem.txt" 2>"$OUT/hw-mem.err" \
        || tail -3 "$OUT/hw-mem.err"
    BW_RUN=$(awk '$1 == "cuda:0" && $2 == "hbm" && /measured/ {print $3; exit}' "$OUT/hw-mem.txt")
    echo "HBM read measured in this run: ${BW_RUN:-?} GB/s (the table's ceiling: $BW GB/s, ../shared/BENCHMARKS.md)" \
        | tee "$OUT/hbm.txt"
    for t in $TYPES; do
        f="$WORK/mistral-7b-$t.gguf"
        [ -s "$f" ] || { echo "$t: no file" >>"$OUT/table.txt"; continue; }
        say "llmlab run $t on cuda: upload rate, 16 tokens"
        timeout 120 $BUILD/llmlab run -m "$f" --device cuda --verbose -c 512 -n 16 --temp 0 -p "Once upon a time" \
            >"$OUT/run-$t.txt" 2>&1 || tail -5 "$OUT/run-$t.txt"
        grep -E "cuda:" "$OUT/run-$t.txt" || true
        say "bench_engine $t (device auto = CUDA when a GPU answers)"
        PEAK="$OUT/mem-$t" peak_run $BUILD/bench/bench_engine -m "$f" -p 512 -n 128 -r "$REPS" --bw "$BW" \
            >"$OUT/bench-$t.txt" 2>&1 || { tail -20 "$OUT/bench-$t.txt"; continue; }
        pp=$(awk '/^pp512/ {print $2}' "$OUT/bench-$t.txt")
        tg=$(awk '/^tg128/ {print $2}' "$OUT/bench-$t.txt")
        frac=$(sed -n 's/.*, \([0-9]*%\) of.*/\1/p' "$OUT/bench-$t.txt")
        gbs=$(sed -n 's/.*= \([0-9.]*\) GB\/s of weights.*/\1/p' "$OUT/bench-$t.txt")
        frun=$([ -n "${BW_RUN:-}" ] && [ -n "$gbs" ] && awk -v g="$gbs" -v b="$BW_RUN" 'BEGIN {printf "%.0f%%", 100 * g / b}') || frun=
        size=$(du -h "$f" | cut -f1)
        mem=$(cat "$OUT/mem-$t")
        printf '%-7s %6s  pp512 %10s t/s  tg128 %8s t/s  %s of %s GB/s (%s of %s)  GPU memory %s MiB\n' "$t" "$size" \
            "$pp" "$tg" "$frac" "$BW" "${frun:--}" "${BW_RUN:-?}" "$mem" >>"$OUT/table.txt"
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$(stat -c %s "$f")" "$pp" "$tg" "$frac / ${frun:--}" "$mem" \
            >>"$OUT/ours.tsv"
    done
fi

# The decode matmuls alone at Mistral-7B shapes (bench/bench_cuda_mv.c: no model file needed), per setting of
# the int8 matvec's knobs (MV_VARIANTS; "-" = the defaults), MVTYPES the weight types.
# Sampling's cost per generated token: tg128 with no sampling, greedy and llama.cpp's default chain (top-k 40,
# top-p 0.95, min-p 0.05, temp 0.8), candidates selected on the device against the whole row downloaded
# (LLMLAB_DEVICE_SAMPLE=0), on Mistral-7B Q4_0 (32000-token vocabulary) and Llama-3.2-1B Q4_0 at Llama 3's
# 128256 tokens (--full-vocab), where the row is 501 KB and a step ~4x shorter.
if has sample; then
    S1="$WORK/llama-3.2-1b-F16.gguf"
    if [ ! -s "$WORK/llama-3.2-1b-Q4_0.gguf" ]; then
        say "synth llama-3.2-1b F16 --full-vocab, quantize Q4_0"
        $BUILD/llmlab synth --arch llama-3.2-1b --full-vocab --type F16 --vocab "$VOCAB" -o "$S1" --quiet \
            >"$OUT/synth-1b.log" 2>&1 || tail -5 "$OUT/synth-1b.log"
        $BUILD/llmlab quantize "$S1" "$WORK/llama-3.2-1b-Q4_0.gguf" Q4_0 16 >"$OUT/quant-1b.log" 2>&1 \
            || tail -5 "$OUT/quant-1b.log"
    fi
    for f in "$WORK/mistral-7b-Q4_0.gguf" "$WORK/llama-3.2-1b-Q4_0.gguf"; do
        [ -s "$f" ] || continue
        say "sampling: $(basename "$f")"
        for sm in none greedy default; do
            for ds in 1 0; do
                [ "$sm" = none ] && [ "$ds" = 0 ] && continue
                r=$(LLMLAB_DEVICE_SAMPLE=$ds $BUILD/bench/bench_engine -m "$f" -p 16 -n 128 -r "${SREPS:-7}" -s $sm 2>&1 \
                    | awk '/^tg128/ {t=$2" ("$4" "$5" "$6" "$7} /^tg sampling/ {sub(/^tg sampling: /, ""); s=$0} END {print t"  "s}')
                echo "  tg128 $r"
            done
        done
    done | tee "$OUT/sample.txt"
fi

if has mv; then
    for v in ${MV_VARIANTS:--}; do
        say "bench_cuda_mv $v"
        [ "$v" = - ] && v=LLMLAB_CUDA_NONE=0
        timeout 120 env $(echo "$v" | tr , ' ') $BUILD/bench/bench_cuda_mv --bw "$BW" --types "${MVTYPES:-Q4_0,Q4_K,Q6_K,Q8_0}" \
            2>&1 | tee -a "$OUT/mv.txt" | grep -v "^settings" || true
    done
fi

# Decode with the tuning knobs, on the smallest quantized file and on F16.
if has variants; then
    for t in ${VTYPES:-Q4_0 Q4_K_M Q8_0 F16}; do
        f="$WORK/mistral-7b-$t.gguf"
        [ -s "$f" ] || continue
        for v in ${VARIANTS:-LLMLAB_CUDA_PDL=0 LLMLAB_CUDA_PRELOAD=0 LLMLAB_CUDA_GRAPHS=0}; do
            r=$(env $(echo "$v" | tr , ' ') $BUILD/bench/bench_engine -m "$f" -p 512 -n 128 -r "$REPS" --bw "$BW" 2>&1 | awk '/^(pp512|tg128)/ {printf "%s %s  ", $1, $2}')
            printf 'variant %-6s %-26s %s\n' "$t" "$v" "$r" | tee -a "$OUT/variants.txt"
        done
    done
fi

# GPU time per kernel name: one pp512 (after the warm-up pp512) and decode steps, from ncu's gpu__time_duration.
if has prof; then
    for t in ${PTYPES:-F16 Q4_K_M}; do
        f="$WORK/mistral-7b-$t.gguf"
        [ -s "$f" ] || continue
        say "ncu kernel times $t"
        timeout 240 ncu --clock-control none --metrics gpu__time_duration.sum --csv --print-units base \
            $BUILD/bench/bench_engine -m "$f" -p 512 -n 4 -r 1 >"$OUT/prof-$t.csv" 2>"$OUT/prof-$t.err" || tail -3 "$OUT/prof-$t.err"
        python3 - "$OUT/prof-$t.csv" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
hdr = rows[0]; ki = hdr.index("Kernel Name"); vi = hdr.index("Metric Value"); ii = hdr.index("ID")
ks = [(int(r[ii]), r[ki].split("(")[0].split("<")[0], float(r[vi].replace(",", ""))) for r in rows[1:]]
n = len(ks)
# the launches of the second pp512 (the timed one): the middle third of the pp kernels is enough to see shares
agg = collections.defaultdict(lambda: [0, 0.0])
for _, k, v in ks:
    agg[k][0] += 1; agg[k][1] += v
tot = sum(v for _, v in agg.values())
print(f"{n} kernels, {tot/1e6:.2f} ms GPU time in all (warm-up pp512 + pp512 + decode)")
for k, (c, v) in sorted(agg.items(), key=lambda kv: -kv[1][1])[:14]:
    print(f"  {k:40s} {c:6d} launches {v/1e6:9.2f} ms {100*v/tot:5.1f}%")
PY
    done
fi

# The hardware lab on this GPU (GEMM, memory, attention incl. the engine's kernel) and PyTorch's figures for the
# same things in the same call (bench/torch_peer.py).
if has hw; then
    say "llmlab bench hw --only gemm,memory,attention"
    timeout 300 $BUILD/llmlab bench hw --only gemm,memory,attention --json "$OUT/hw" >"$OUT/hw.txt" 2>"$OUT/hw.err" \
        || tail -5 "$OUT/hw.err"
    grep -E "cuda|GPU|gpu" "$OUT/hw.txt" | head -60
    say "PyTorch on the same GPU"
    timeout 120 python3 bench/torch_peer.py 2>&1 | tee "$OUT/torch_peer.txt" || true
fi

# The int8 matvec of Q4_K (ffn gate/up/down) in detail: what bounds it.
if has ncu_mv; then
    f="$WORK/mistral-7b-Q4_K_M.gguf"
    if [ -s "$f" ]; then
        say "ncu k_mmvq detail (Q4_K_M decode)"
        timeout 200 ncu --clock-control none --kernel-name regex:k_mmvq --launch-skip 300 --launch-count 3 \
            --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section WarpStateStats \
            --section LaunchStats $BUILD/bench/bench_engine -m "$f" -p 8 -n 8 -r 1 >"$OUT/ncu-mv.txt" 2>&1 || true
        grep -E "k_mmvq|Throughput|Duration|Occupancy|Stall|Registers|Grid Size|Waves|Hit Rate" "$OUT/ncu-mv.txt" | head -60
    fi
fi

# One quantized prefill's dequantize kernel in detail (why it runs far under the HBM rate).
if has ncu_dq; then
    f="$WORK/mistral-7b-Q4_K_M.gguf"
    if [ -s "$f" ]; then
        say "ncu k_dequant detail (Q4_K_M)"
        timeout 200 ncu --clock-control none --kernel-name regex:k_dequant --launch-skip 40 --launch-count 2 \
            --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section WarpStateStats \
            --section LaunchStats $BUILD/bench/bench_engine -m "$f" -p 512 -n 1 -r 1 >"$OUT/ncu-dq.txt" 2>&1 || true
        grep -E "k_dequant|Throughput|Duration|Occupancy|Stall|Registers|Block Size|Grid Size|Waves|L1|L2|DRAM" \
            "$OUT/ncu-dq.txt" | head -60
    fi
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

# Decode kernel by kernel (ncu, kernels serialized: no overlap between them): mean time and DRAM read rate per
# (kernel, grid), over a few decode steps, to see where a token's time goes beside the weight bytes.
if has dprof; then
    for t in ${DTYPES:-Q4_0 F16}; do
        f="$WORK/mistral-7b-$t.gguf"
        [ -s "$f" ] || continue
        say "ncu decode kernels $t"
        timeout 200 ncu --clock-control none --cache-control none --launch-skip 400 --launch-count 900 \
            --metrics gpu__time_duration.sum,dram__bytes_read.sum --csv --print-units base \
            $BUILD/bench/bench_engine -m "$f" -p 1 -n 8 -r 1 >"$OUT/dprof-$t.csv" 2>"$OUT/dprof-$t.err" || tail -3 "$OUT/dprof-$t.err"
        python3 - "$OUT/dprof-$t.csv" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
h = rows[0]; ki = h.index("Kernel Name"); mi = h.index("Metric Name"); vi = h.index("Metric Value"); ii = h.index("ID")
gi = h.index("Grid Size") if "Grid Size" in h else None
per = collections.defaultdict(dict)
for r in rows[1:]:
    per[int(r[ii])][r[mi]] = float(r[vi].replace(",", ""))
    per[int(r[ii])]["key"] = (r[ki].split("(")[0][:60], r[gi] if gi is not None else "")
agg = collections.defaultdict(lambda: [0, 0.0, 0.0])
for k in per.values():
    a = agg[k["key"]]; a[0] += 1; a[1] += k.get("gpu__time_duration.sum", 0); a[2] += k.get("dram__bytes_read.sum", 0)
tot = sum(a[1] for a in agg.values())
print(f"{len(per)} kernels, {tot/1e6:.3f} ms")
for key, (n, t, b) in sorted(agg.items(), key=lambda kv: -kv[1][1])[:22]:
    print(f"  {key[0]:60s} {key[1]:>16s} x{n:4d} {t/n/1e3:8.2f} us {b/n/1e6:8.2f} MB {b/t if t else 0:7.0f} GB/s {100*t/tot:5.1f}%")
PY
    done
fi

# llama.cpp's llama-bench on the same files, after ours (same run, same machine).
if has peer; then
    if [ ! -x "$PEER_BIN" ] && [ -d "$WORK/lcpp" ]; then
        say "waiting for the llama.cpp build (at most ${PEER_WAIT:-300} s)"
        i=0
        while [ ! -s "$WORK/lcpp/status" ] && [ $i -lt "${PEER_WAIT:-300}" ]; do sleep 5; i=$((i + 5)); done
        [ -x "$PEER_BIN" ] || { echo "llama.cpp build not done:"; tail -5 "$WORK/lcpp-build.log"; }
    fi
    if [ -x "$PEER_BIN" ]; then
        : >"$OUT/peer.txt"
        : >"$OUT/peer.tsv"
        for t in $TYPES; do
            f="$WORK/mistral-7b-$t.gguf"
            [ -s "$f" ] || continue
            say "llama-bench $t"
            PEAK="$OUT/peer-mem-$t" peak_run timeout 150 "$PEER_BIN" -m "$f" -p 512 -n 128 -ngl 99 -fa 1 -r "$REPS" \
                -o csv >"$OUT/peer-$t.csv" 2>"$OUT/peer-$t.err" || tail -3 "$OUT/peer-$t.err"
            python3 -c 'import csv,sys
for r in csv.DictReader(open(sys.argv[1])): print("peer", sys.argv[2], "pp%s" % r["n_prompt"] if r["n_prompt"] != "0" else "tg%s" % r["n_gen"], "%.1f +- %.1f t/s" % (float(r["avg_ts"]), float(r["stddev_ts"])))' "$OUT/peer-$t.csv" "$t" \
                | tee -a "$OUT/peer.txt"
            awk -v t="$t" -v m="$(cat "$OUT/peer-mem-$t")" '$1 == "peer" && $2 == t {v[$3] = $4; s[$3] = $6}
                END {printf "%s\t%s\t%s\t%s\t%s\t%s\n", t, v["pp512"], s["pp512"], v["tg128"], s["tg128"], m}' \
                "$OUT/peer.txt" >>"$OUT/peer.tsv"
        done
    fi
fi

# Decode at depth: tg128 after DEPTHS tokens of context, ours with each KV cache type of DEPTH_KV (f16: the
# default, as llama.cpp's) and llama-bench -d (flash attention, its F16 KV cache) on DEPTH_TYPES.
if has depth; then
    for t in ${DEPTH_TYPES:-Q4_0}; do
        f="$WORK/mistral-7b-$t.gguf"
        [ -s "$f" ] || continue
        for d in ${DEPTHS:-4096 16384}; do
            say "tg128 at depth $d, $t"
            [ "${OURS:-1}" = 1 ] && for kv in ${DEPTH_KV:-f16 f32}; do
                r=$($BUILD/bench/bench_engine -m "$f" -p 512 -n 128 -r "${DREPS:-3}" -d "$d" -ctk $kv 2>&1 \
                    | awk '/^tg128/ {print $2" t/s (min "$5" max "$7}')
                echo "  ours KV $kv d$d tg128 $r"
            done
            if [ -x "$PEER_BIN" ] && [ "${PEER:-1}" = 1 ]; then
                "$PEER_BIN" -m "$f" -p 0 -n 128 -d "$d" -ngl 99 -fa 1 -r "${DREPS:-3}" -o csv 2>/dev/null \
                    | python3 -c 'import csv,sys
for r in csv.DictReader(sys.stdin): print("  llama.cpp d%s tg%s %.1f +- %.1f t/s" % (r["n_depth"], r["n_gen"], float(r["avg_ts"]), float(r["stddev_ts"])))'
            fi
        done
    done | tee "$OUT/depth.txt"
fi

# Many sequences (issue 18): aggregate t/s of N parallel sequences (prompts of 128 tokens as one batch, then 128
# steps of one token per sequence), ours (`bench model --sequences`) beside llama-batched-bench on the same file;
# and the GPU memory of 4 contexts on one model (weights once + 4 KV caches: bench/engine_mem.c).
BB_BIN="$WORK/lcpp/build/bin/llama-batched-bench"
if has batched; then
    for t in ${BTYPES:-Q4_K_M F16}; do
        f="$WORK/mistral-7b-$t.gguf"
        [ -s "$f" ] || continue
        [ "${OURS:-1}" = 1 ] && say "sequences ${NPL:-1,4,16}, $t: llmlab bench model --sequences" &&
        timeout 400 $BUILD/llmlab bench model -m "$f" --device cuda -p 0 -n 128 --sequences "${NPL:-1,4,16}" \
            --seq-prompt 128 -r "${BREPS:-3}" --no-cold --json "$OUT/bm-$t" >"$OUT/bm-$t.txt" 2>"$OUT/bm-$t.err" \
            || tail -5 "$OUT/bm-$t.err"
        [ "${OURS:-1}" = 1 ] && grep -E "tg128|pp128" "$OUT/bm-$t.txt" | sed "s/^/  ours $t /"
        if [ -x "$BB_BIN" ] && [ "${PEER:-1}" = 1 ]; then
            say "llama-batched-bench $t"
            timeout 300 "$BB_BIN" -m "$f" -c 4096 -b 2048 -ub 512 -npp 128 -ntg 128 -npl "${NPL:-1,4,16}" -ngl 99 -fa on \
                >"$OUT/bb-$t.txt" 2>"$OUT/bb-$t.err" || tail -5 "$OUT/bb-$t.err"
            grep -E "^\|" "$OUT/bb-$t.txt" | sed "s/^/  llama.cpp $t /"
        fi
    done | tee "$OUT/batched.txt"
fi
if has mem4; then
    for t in ${MTYPES:-Q4_K_M}; do
        f="$WORK/mistral-7b-$t.gguf"
        [ -s "$f" ] || continue
        say "GPU memory of 4 contexts on one model ($t, n_ctx 4096, F16 cache)"
        before=$(gpu_used)
        $BUILD/bench/engine_mem -m "$f" --device cuda -c 4096 -n 4 &
        pid=$!
        peak=0
        while kill -0 $pid 2>/dev/null; do m=$(gpu_used); [ -n "$m" ] && [ "$m" -gt "$peak" ] && peak=$m; sleep 0.2; done
        wait $pid || true
        echo "  nvidia-smi: peak $((peak - before)) MiB used by the process (file $(du -m "$f" | cut -f1) MiB)"
    done | tee "$OUT/mem4.txt"
fi

say "summary"
echo "(BENCHMARKS.md's llama.cpp b10587 on an H100, another run: F16 19436 / 173, Q8_0 10832 / 240, Q4_0 10823 / 336, Q4_K_M 9302 / 273)"
[ -f "$OUT/peer.txt" ] && { echo "llama.cpp, this run:"; cat "$OUT/peer.txt"; }
[ -f "$OUT/variants.txt" ] && cat "$OUT/variants.txt"
[ -f "$OUT/hbm.txt" ] && cat "$OUT/hbm.txt"
[ -f "$OUT/table.txt" ] && cat "$OUT/table.txt"
# Both engines side by side (ours.tsv, peer.tsv of this call): t/s, ratio, % of the HBM ceiling at decode,
# GPU memory at its peak against the file's size.
if [ -s "$OUT/ours.tsv" ]; then
    python3 - "$OUT/ours.tsv" "$OUT/peer.tsv" <<'PY'
import sys, os
peer = {}
if os.path.exists(sys.argv[2]):
    for l in open(sys.argv[2]):
        f = l.rstrip("\n").split("\t")
        if len(f) == 6: peer[f[0]] = f
def num(x):
    try: return float(x)
    except ValueError: return None
def ratio(a, b): return f"{a / b:.2f}" if a and b else "-"
def gib(mib): return f"{mib / 1024:.1f} GiB" if mib is not None else "?"
print("| type | file | llmlab pp512 | llama.cpp pp512 | ratio | llmlab tg128 | llama.cpp tg128 | ratio | decode % of HBM (BENCHMARKS.md / this run) | GPU memory llmlab / llama.cpp |")
print("|---|---|---|---|---|---|---|---|---|---|")
for l in open(sys.argv[1]):
    t, size, pp, tg, frac, mem = l.rstrip("\n").split("\t")
    p = peer.get(t, [t, "", "", "", "", "?"])
    opp, otg, ppp, ptg = num(pp), num(tg), num(p[1]), num(p[3])
    print(f"| {t} | {int(size) / 2**30:.2f} GiB | {pp} | {p[1] or '-'} ± {p[2] or '-'} | {ratio(opp, ppp)} | {tg} | "
          f"{p[3] or '-'} ± {p[4] or '-'} | {ratio(otg, ptg)} | {frac} | {gib(num(mem))} / {gib(num(p[5]))} |")
PY
fi
grep -E "^\[  (PASSED|FAILED|SKIPPED) " "$OUT/test_cuda.txt" 2>/dev/null || true
