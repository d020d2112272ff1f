// fuzz_model.c — libFuzzer target for model load + eval (`make fuzz`): the input is a GGUF, handed to
// ll_model_load as a file (a memfd); when it loads, a context of 8 positions tokenizes a fixed text, evaluates
// it (a 6-token prompt in batches of 4, then one decode step) and reads the logits. Every input is refused with
// a message, or runs to the end; non-finite logits (fuzzed weights may hold Inf/NaN) are counted, not a fault.
// Inputs whose tensors would need more than 64 MB as F32 are skipped so the fuzzer stays fast.
// -DLL_FUZZ_MAKE_CORPUS: writes the seeds (tiny random Llama/Qwen2 models).
#include "formats/gguf.h"
#include "llmlab.h"
#include "core/half.h"
#include "types/types.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define FUZZ_MODEL_MAX_F32_BYTES (64ull << 20)

static volatile uint64_t g_sink;
static uint64_t g_nonfinite_runs;
// how far the inputs got, printed at exit: run, parsed within the cap, loaded, evaluated
static uint64_t g_runs, g_parsed, g_loaded, g_evaluated;

static void print_stats(void) {
    fprintf(stderr, "fuzz_model: %llu inputs, %llu parsed within the cap, %llu loaded, %llu evaluated, %llu logit reads with "
            "non-finite values\n", (unsigned long long)g_runs, (unsigned long long)g_parsed, (unsigned long long)g_loaded,
            (unsigned long long)g_evaluated, (unsigned long long)g_nonfinite_runs);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    atexit(print_stats);
    return 0;
}

// Sum of every tensor's element count x 4 bytes; UINT64_MAX when the input does not parse.
static uint64_t f32_bytes(const uint8_t *data, size_t size) {
    ll_gguf *g;
    ll_error err;
    if (ll_gguf_open_memory(&g, data, size, "fuzz.gguf", &err) != LL_OK) return UINT64_MAX;
    uint64_t total = 0;
    for (uint64_t i = 0; i < g->n_tensors && total <= FUZZ_MODEL_MAX_F32_BYTES; i++) {
        uint64_t n = 1;
        for (uint32_t d = 0; d < g->tensors[i].n_dims; d++) {
            uint64_t e = (uint64_t)g->tensors[i].ne[d];
            n = e && n > UINT64_MAX / 8 / e ? UINT64_MAX / 8 : n * e;
        }
        total += n * 4;
    }
    ll_gguf_free(g);
    return total;
}

static void check_logits(ll_context *c, int nv) {
    const float *l = ll_logits(c, -1);
    if (!l) abort();
    int bad = 0;
    for (int i = 0; i < nv; i++) bad += !isfinite(l[i]);
    if (bad && g_nonfinite_runs++ == 0) fprintf(stderr, "fuzz_model: non-finite logits (%d of %d); counted, not a fault\n", bad, nv);
}

static int32_t argmax_or_zero(ll_context *c, int nv) {
    const float *l = ll_logits(c, -1);
    int32_t best = 0;
    for (int i = 1; i < nv; i++)
        if (l[i] > l[best]) best = i;
    return best;
}

static void run_model(ll_model *m) {
    int nv = ll_model_n_vocab(m);
    if (nv <= 0) abort();
    static const char text[] = "Once upon a time, <s> \xc3\xa9t\xc3\xa9 \xe2\x96\x81x 42!";
    int32_t ids[64];
    int n = ll_tokenize(m, text, sizeof text - 1, true, true, ids, 64);
    if (n > 64) abort();
    if (n < 0) n = 0; // (more than 64 tokens: the cap is honoured, the text is not evaluated)
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= nv) abort();
    char piece[256];
    for (int i = 0; i < n; i++) g_sink += (uint64_t)ll_token_to_piece(m, ids[i], true, piece, sizeof piece);
    if (n == 0) ids[n++] = 0;
    if (n > 6) n = 6;
    ll_context_params cp = ll_context_default_params();
    cp.n_ctx = 8;
    cp.n_batch = 4;
    cp.n_threads = 1;
    cp.device = "cpu";
    ll_context *c;
    ll_error err;
    if (ll_context_init(m, &cp, &c, &err) != LL_OK) {
        if (!err.message[0]) abort();
        return;
    }
    if (ll_eval(c, ids, n, false, &err) == LL_OK) {
        g_evaluated++;
        check_logits(c, nv);
        int32_t next = argmax_or_zero(c, nv);
        if (ll_eval(c, &next, 1, false, &err) == LL_OK) check_logits(c, nv);
        else if (!err.message[0]) abort();
    } else if (!err.message[0]) {
        abort();
    }
    ll_context_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    g_runs++;
    if (f32_bytes(data, size) > FUZZ_MODEL_MAX_F32_BYTES) return 0; // unparsable (fuzz_gguf's job) or too big
    g_parsed++;
    int fd = memfd_create("model.gguf", MFD_CLOEXEC);
    if (fd < 0) return 0;
    if (write(fd, data, size) == (ssize_t)size) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ll_model_params mp = ll_model_default_params();
        mp.n_threads = 1;
        ll_model *m;
        ll_error err;
        if (ll_model_load(path, &mp, &m, &err) == LL_OK) {
            g_loaded++;
            run_model(m);
            ll_model_free(m);
        } else if (!strstr(err.message, path) && !strstr(err.message, "fd/")) {
            // messages name the file (or its /proc/self/fd/N); others are printed for a look, not fatal
            static int shown;
            if (shown++ < 3) fprintf(stderr, "fuzz_model: message without the file name: %s\n", err.message);
        }
    }
    close(fd);
    return 0;
}

#ifdef LL_FUZZ_MAKE_CORPUS
// ---- seed corpus: tiny random models as tests/ref_forward.h builds them (byte-fallback SentencePiece vocabulary
// of n_vocab tokens: <unk> <s> </s>, 256 byte tokens, filler), written with the GGUF builder.
typedef struct seed_cfg {
    const char *file, *arch;
    int n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab;
    uint32_t wtype; // F32, F16, Q8_0 or Q4_0 for the matrices
    bool tied, bias;
} seed_cfg;

static uint64_t g_rng = 42;
static float rnd(void) { // uniform in [-1, 1)
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)(g_rng >> 40) / (float)(1u << 23) - 1.0f;
}

static void seed_tensor(ll_gguf *g, void ***bufs, int *nb, const char *name, uint32_t type, int64_t ne0, int64_t ne1,
                        float scale, float offset) {
    size_t n = (size_t)(ne0 * ne1);
    float *f = malloc(n * sizeof *f);
    for (size_t i = 0; i < n; i++) f[i] = offset + scale * rnd();
    const ll_type_traits *tt = ll_type_get(type);
    size_t bytes = n / (size_t)tt->blck * tt->size;
    void *buf = malloc(bytes);
    if (type == LL_TYPE_F32) memcpy(buf, f, bytes);
    else if (type == LL_TYPE_F16) for (size_t i = 0; i < n; i++) ((uint16_t *)buf)[i] = ll_fp32_to_fp16(f[i]);
    else tt->from_float_ref(f, buf, (int64_t)n);
    free(f);
    ll_error err;
    if (ll_gguf_add_tensor(g, name, type, ne1 > 1 ? 2 : 1, (int64_t[]){ne0, ne1}, buf, &err) != LL_OK) {
        fprintf(stderr, "%s\n", err.message);
        exit(1);
    }
    *bufs = realloc(*bufs, (size_t)(*nb + 1) * sizeof **bufs);
    (*bufs)[(*nb)++] = buf;
}

static void seed_vocab(ll_gguf *g, int n) {
    ll_str *toks = calloc((size_t)n, sizeof *toks);
    float *scores = calloc((size_t)n, sizeof *scores);
    int32_t *types = calloc((size_t)n, sizeof *types);
    char(*txt)[16] = calloc((size_t)n, 16);
    static const char *const words[] = {"\xe2\x96\x81Once", "\xe2\x96\x81upon", "\xe2\x96\x81a", "\xe2\x96\x81time", ","};
    for (int i = 0; i < n; i++) {
        if (i < 3) snprintf(txt[i], 16, "%s", (const char *[]){"<unk>", "<s>", "</s>"}[i]);
        else if (i < 259) snprintf(txt[i], 16, "<0x%02X>", i - 3);
        else if (i < 264) snprintf(txt[i], 16, "%s", words[i - 259]);
        else snprintf(txt[i], 16, "t%d", i);
        toks[i] = (ll_str){txt[i], strlen(txt[i])};
        scores[i] = -(float)i;
        types[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1;
    }
    ll_gguf_set_str(g, "tokenizer.ggml.model", "llama");
    ll_gguf_set_arr_str(g, "tokenizer.ggml.tokens", (uint64_t)n, toks);
    ll_gguf_set_arr(g, "tokenizer.ggml.scores", LL_GGUF_FLOAT32, (uint64_t)n, scores);
    ll_gguf_set_arr(g, "tokenizer.ggml.token_type", LL_GGUF_INT32, (uint64_t)n, types);
    ll_gguf_set_u32(g, "tokenizer.ggml.bos_token_id", 1);
    ll_gguf_set_u32(g, "tokenizer.ggml.eos_token_id", 2);
    free(toks);
    free(scores);
    free(types);
    free(txt);
}

static void seed_model(const char *dir, const seed_cfg *c) {
    ll_gguf *g = ll_gguf_new("seed");
    void **bufs = NULL;
    int nb = 0;
    char k[96], n[64], path[512];
    ll_gguf_set_str(g, "general.architecture", c->arch);
#define KEY(s) (snprintf(k, sizeof k, "%s.%s", c->arch, s), k)
    ll_gguf_set_u32(g, KEY("embedding_length"), (uint32_t)c->n_embd);
    ll_gguf_set_u32(g, KEY("block_count"), (uint32_t)c->n_layer);
    ll_gguf_set_u32(g, KEY("feed_forward_length"), (uint32_t)c->n_ff);
    ll_gguf_set_u32(g, KEY("attention.head_count"), (uint32_t)c->n_head);
    ll_gguf_set_u32(g, KEY("attention.head_count_kv"), (uint32_t)c->n_head_kv);
    ll_gguf_set_u32(g, KEY("rope.dimension_count"), (uint32_t)(c->n_embd / c->n_head));
    ll_gguf_set_u32(g, KEY("context_length"), 64);
    ll_gguf_set_f32(g, KEY("rope.freq_base"), 10000.0f);
    ll_gguf_set_f32(g, KEY("attention.layer_norm_rms_epsilon"), 1e-5f);
#undef KEY
    seed_vocab(g, c->n_vocab);
    int kvd = c->n_head_kv * (c->n_embd / c->n_head);
    seed_tensor(g, &bufs, &nb, "token_embd.weight", c->wtype, c->n_embd, c->n_vocab, 1.0f, 0);
    for (int l = 0; l < c->n_layer; l++) {
#define T(name, type, a, b, sc, off) (snprintf(n, sizeof n, "blk.%d.%s", l, name), seed_tensor(g, &bufs, &nb, n, type, a, b, sc, off))
        T("attn_norm.weight", LL_TYPE_F32, c->n_embd, 1, 0.4f, 1.0f);
        T("attn_q.weight", c->wtype, c->n_embd, c->n_embd, 0.3f, 0);
        T("attn_k.weight", c->wtype, c->n_embd, kvd, 0.3f, 0);
        T("attn_v.weight", c->wtype, c->n_embd, kvd, 0.2f, 0);
        T("attn_output.weight", c->wtype, c->n_embd, c->n_embd, 0.2f, 0);
        if (c->bias) {
            T("attn_q.bias", LL_TYPE_F32, c->n_embd, 1, 0.3f, 0);
            T("attn_k.bias", LL_TYPE_F32, kvd, 1, 0.3f, 0);
            T("attn_v.bias", LL_TYPE_F32, kvd, 1, 0.3f, 0);
        }
        T("ffn_norm.weight", LL_TYPE_F32, c->n_embd, 1, 0.4f, 1.0f);
        T("ffn_gate.weight", c->wtype, c->n_embd, c->n_ff, 0.2f, 0);
        T("ffn_down.weight", c->wtype, c->n_ff, c->n_embd, 0.2f, 0);
        T("ffn_up.weight", c->wtype, c->n_embd, c->n_ff, 0.2f, 0);
#undef T
    }
    seed_tensor(g, &bufs, &nb, "output_norm.weight", LL_TYPE_F32, c->n_embd, 1, 0.4f, 1.0f);
    if (!c->tied) seed_tensor(g, &bufs, &nb, "output.weight", c->wtype, c->n_embd, c->n_vocab, 0.3f, 0);
    snprintf(path, sizeof path, "%s/%s", dir, c->file);
    ll_error err;
    if (ll_gguf_write_file(g, path, &err) != LL_OK) fprintf(stderr, "%s\n", err.message);
    ll_gguf_free(g);
    for (int i = 0; i < nb; i++) free(bufs[i]);
    free(bufs);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "fuzz/corpus-model";
    static const seed_cfg seeds[] = {
        {"llama-f16-gqa.gguf", "llama", 32, 1, 4, 2, 64, 272, LL_TYPE_F16, true, false},
        {"llama-q8_0-2layers.gguf", "llama", 32, 2, 2, 2, 64, 272, LL_TYPE_Q8_0, false, false},
        {"qwen2-q4_0-bias.gguf", "qwen2", 64, 1, 4, 1, 64, 272, LL_TYPE_Q4_0, true, true},
        {"llama-f32-mqa.gguf", "llama", 16, 1, 2, 1, 32, 264, LL_TYPE_F32, false, false},
    };
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) seed_model(dir, &seeds[i]);
    return 0;
}
#endif
