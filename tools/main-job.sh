#!/bin/sh
# The main job (`make run`): until the model lab lands, generate text with the engine.
# With ../shared present: stories260K, a real trained model, continues "Once upon a time" (greedy), then the
# same model in its llama2.c form. Without it: a synthetic model is written with `llmlab synth` and run.
set -e
bin=$1
shared=${2:-../shared}
model="$shared/models/stories260K.gguf"
if [ -f "$model" ]; then
    echo "== llmlab run -m $model -p 'Once upon a time' -n 120 --temp 0"
    "$bin" run -m "$model" -p "Once upon a time" -n 120 --temp 0 --echo
    echo
    echo "== the same weights from the llama2.c checkpoint (sampled, seed 1)"
    "$bin" run -m "$shared/models/stories260K.bin" --tokenizer "$shared/models/tok512.bin" -p "Lily and Tom" -n 80 --seed 1 --echo
else
    echo "(no $shared: generating from a synthetic model; its weights are random, so is its text)"
    tmp=${TMPDIR:-/tmp}/llmlab-main-job.gguf
    "$bin" synth --arch tiny --type F16 --vocab builtin -o "$tmp"
    "$bin" run -m "$tmp" -p "Hello" -n 32 --seed 1
    rm -f "$tmp"
fi
