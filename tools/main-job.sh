#!/bin/sh
# The main job (`make run`): the laboratory's full run on the embedded default. `llmlab bench --quick`
# measures this machine (bench hw), writes a synthetic SmolLM-135M-shaped model (F16) and its Q8_0, Q4_K_M and
# Q4_0 quantizations in a temporary folder, measures them (bench model, with fit's prediction beside each),
# and, when ../shared has the real stories260K model and the WikiText-2 text, sweeps its quantizations' quality
# (perplexity, KL-divergence); then it writes REPORT.md and report.html into results/raw/<hostname>/. No
# download; the vocabulary comes from ../shared when present, else a built-in one. Then stories260K writes a
# few lines of text.
set -e
bin=$1
shared=${2:-../shared}
model="$shared/models/stories260K.gguf"
if [ -f "$model" ]; then
    LLMLAB_SHARED="$shared" "$bin" bench --quick --quality "$model"
else
    LLMLAB_SHARED="$shared" "$bin" bench --quick
fi
if [ -f "$model" ]; then
    echo
    echo "== and the engine generating with a real (tiny) model: llmlab run -m $model -p 'Once upon a time' -n 60 --temp 0"
    "$bin" run -m "$model" -p "Once upon a time" -n 60 --temp 0 --echo
fi
