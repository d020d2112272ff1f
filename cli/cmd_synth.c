// cmd_synth.c — `llmlab synth`: parse the flags, print the plan, and let model/synth.c write a random-weight
// GGUF at a preset's real shapes with a real tokenizer.
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "model/synth.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: llmlab synth --arch NAME -o FILE [--type F32|F16|BF16] [--vocab VOCAB.gguf] [--seed N]\n"
            "                    [--layers N] [--full-vocab] [--quiet]\n\n"
            "Writes a GGUF with random weights at a named architecture's shapes (for speed and memory tests;\n"
            "its text is noise). Same seed, same bytes. Matrices and token_embd are --type (default F16), norms\n"
            "and biases F32; quantize the result with `llmlab quantize`.\n\n"
            "  --arch NAME     a preset below\n"
            "  -o FILE         output path (written atomically; free disk space is checked first)\n"
            "  --type T        F32, F16 or BF16 (default F16)\n"
            "  --vocab FILE    a vocabulary GGUF whose tokenizer.* keys are copied (default: the preset's vocab\n"
            "                  under $LLMLAB_SHARED/models/vocab/, LLMLAB_SHARED defaulting to ../shared);\n"
            "                  `builtin`: a small byte-fallback vocabulary compiled in (no files needed)\n"
            "  --seed N        generator seed (default 42)\n"
            "  --layers N      fewer (or more) blocks than the preset\n"
            "  --full-vocab    pad the token list with unused [PADn] tokens up to the preset's real vocab size\n"
            "  --quiet         no progress bar\n\n"
            "The vocabulary size is the vocab file's token count (32000 for llama-spm, 50257 for gpt-2), not the\n"
            "preset's real one, unless --full-vocab: so `--arch llama3-8b` has Llama 3's layers with a 32000-token\n"
            "embedding, as in ../shared/BENCHMARKS.md.\n\n"
            "presets (parameters at the real vocab size):\n"
            "  %-14s %-6s %5s %6s %7s %6s %7s %9s  %s\n",
            "name", "arch", "dim", "layers", "heads", "ffn", "vocab", "params", "notes");
    for (int i = 0; ll_preset_at(i); i++) {
        const ll_preset *p = ll_preset_at(i);
        char heads[16], vocab[16], params[16], notes[64] = "";
        snprintf(heads, sizeof heads, "%d/%d", p->n_head, p->n_head_kv);
        if (p->n_vocab) snprintf(vocab, sizeof vocab, "%d", p->n_vocab);
        else snprintf(vocab, sizeof vocab, "(file)");
        double n = (double)ll_preset_params(p);
        if (!p->n_vocab) snprintf(params, sizeof params, "%.0fK+emb", n / 1e3);
        else if (n >= 1e9) snprintf(params, sizeof params, "%.2fB", n / 1e9);
        else snprintf(params, sizeof params, "%.0fM", n / 1e6);
        snprintf(notes, sizeof notes, "%s%s%s vocab, rope %g", p->tied_embeddings ? "tied, " : "",
                 p->qkv_bias ? "qkv bias, " : "", p->vocab, (double)p->rope_base);
        fprintf(f, "  %-14s %-6s %5d %6d %7s %6d %7s %9s  %s\n", p->name, p->arch, p->n_embd, p->n_layer, heads,
                p->n_ff, vocab, params, notes);
    }
}

// Parse argv into params; returns -1 to go on, else the exit status.
static int parse(int argc, char **argv, ll_synth_params *p, const char **out) {
    const char *cmd = "synth";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        long n;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--arch")) {
            if (!(p->preset = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (!(*out = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--type")) {
            ll_type t;
            if (!(v = cli_value(cmd, argc, argv, &i))) return 1;
            if (!ll_type_from_name(v, &t) || (t != LL_TYPE_F32 && t != LL_TYPE_F16 && t != LL_TYPE_BF16)) {
                fprintf(stderr, "llmlab synth: --type expects F32, F16 or BF16, got '%s' (quantized types: run "
                                "llmlab quantize on the result)\n", v);
                return 1;
            }
            p->type = t;
        } else if (!strcmp(a, "--vocab")) {
            if (!(p->vocab_path = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--seed")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || !cli_u64(cmd, a, v, &p->seed)) return 1;
        } else if (!strcmp(a, "--layers")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, v, 1, 1024, &n)) return 1;
            p->n_layer = (int)n;
        } else if (!strcmp(a, "--full-vocab")) {
            p->full_vocab = true;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            p->progress = false;
        } else {
            fprintf(stderr, "llmlab synth: unknown argument '%s' (see llmlab synth --help)\n", a);
            return 1;
        }
    }
    if (!p->preset || !*out) {
        fprintf(stderr, "llmlab synth: --arch and -o are required (see llmlab synth --help)\n");
        return 1;
    }
    if (ll_same_file(p->vocab_path, *out)) { // by device and inode: "d/./v.gguf" is "d/v.gguf"
        fprintf(stderr, "llmlab synth: %s is the --vocab file %s; give another output path with -o\n", *out, p->vocab_path);
        return 1;
    }
    if (!ll_preset_find(p->preset)) {
        fprintf(stderr, "llmlab synth: unknown preset '%s'; one of:", p->preset);
        for (int i = 0; ll_preset_at(i); i++) fprintf(stderr, " %s", ll_preset_at(i)->name);
        fprintf(stderr, "\n");
        return 1;
    }
    return -1;
}

int cmd_synth(int argc, char **argv) {
    ll_synth_params p = ll_synth_default_params();
    p.preset = NULL;
    p.progress = true;
    const char *out = NULL;
    int rc = parse(argc, argv, &p, &out);
    if (rc >= 0) return rc;

    ll_error err;
    ll_gguf *plan;
    uint64_t bytes;
    if (ll_synth_plan(&plan, &p, &bytes, &err)) return cli_fail("synth", &err);
    const ll_preset *pr = ll_preset_find(p.preset);
    uint32_t n_layer = 0, n_vocab = 0;
    char key[96], size[32];
    snprintf(key, sizeof key, "%s.block_count", pr->arch);
    ll_gguf_get_u32(plan, key, &n_layer, NULL);
    snprintf(key, sizeof key, "%s.vocab_size", pr->arch);
    ll_gguf_get_u32(plan, key, &n_vocab, NULL);
    ll_fmt_bytes(size, sizeof size, (double)bytes);
    fprintf(stderr, "llmlab synth: %s (%s, dim %d, %u layers, %d/%d heads, ffn %d, vocab %u), %s, seed %llu: %s -> %s\n",
            pr->name, pr->arch, pr->n_embd, n_layer, pr->n_head, pr->n_head_kv, pr->n_ff, n_vocab,
            ll_type_name(p.type), (unsigned long long)p.seed, size, out);
    ll_gguf_free(plan);

    double t0 = ll_time_s();
    if (ll_synth_write(out, &p, &err)) return cli_fail("synth", &err);
    double dt = ll_time_s() - t0;
    fprintf(stderr, "llmlab synth: wrote %s (%llu bytes) in %.1f s, %.0f MB/s\n", out, (unsigned long long)bytes, dt,
            dt > 0 ? (double)bytes / dt / 1e6 : 0.0);
    return 0;
}
