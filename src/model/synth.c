// synth.c — writes random-weight GGUFs at a preset's shapes with a real tokenizer, streaming 1 MiB pieces
// through the GGUF writer. Weight scales follow ../shared/golden/README.md section 4 (~1/sqrt(fan_in)).
#include "model/synth.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "core/half.h"

#ifdef __F16C__
#include <immintrin.h>
#endif

#define SYNTH_CHUNK (256 * 1024) // elements generated per piece: 1 MiB of F32
#define GOLDEN_GAMMA 0x9e3779b97f4a7c15ull

ll_synth_params ll_synth_default_params(void) {
    return (ll_synth_params){.preset = "tiny", .type = LL_TYPE_F16, .seed = 42};
}

// ---- the generator ------------------------------------------------------------------------------------
// Counter-based: element i of stream `key` is splitmix64's finalizer of key + (i+1)*gamma, so any piece can
// be generated independently (chunk size never changes the bytes) and the loop vectorizes.
static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void ll_synth_normal(uint64_t key, uint64_t first, float *dst, size_t n) {
    // Irwin-Hall with 4 terms: the sum of four uniforms on [0, 65535] has mean 131070, sd ~ 65536/sqrt(3).
    const float scale = 1.7320508f / 65536.0f;
    for (size_t i = 0; i < n; i++) {
        uint64_t r = mix64(key + (first + i + 1) * GOLDEN_GAMMA);
        uint32_t s = (uint32_t)(r & 0xffff) + (uint32_t)((r >> 16) & 0xffff) + (uint32_t)((r >> 32) & 0xffff) +
                     (uint32_t)(r >> 48);
        dst[i] = ((float)s - 131070.0f) * scale;
    }
}

static void synth_uniform(uint64_t key, uint64_t first, float *dst, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) {
        uint64_t r = mix64(key + (first + i + 1) * GOLDEN_GAMMA);
        dst[i] = lo + (hi - lo) * ((float)(r >> 40) * (1.0f / 16777216.0f));
    }
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

// Per-tensor stream: depends on the seed and the tensor's name only (so --layers keeps blocks 0..N-1 equal).
static uint64_t tensor_key(uint64_t seed, const char *name) { return mix64(seed * GOLDEN_GAMMA ^ fnv1a(name)); }

static bool has_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

// How a tensor's values are drawn (golden README section 4, norms narrowed to U(0.8, 1.2)): norms uniform,
// the rest normal with sd = c / sqrt(fan_in), fan_in = ne[0].
typedef struct gen_spec {
    bool uniform;
    float a, b; // uniform: [a, b); normal: sd a
} gen_spec;

static gen_spec gen_for(const ll_gguf_tensor *t, const char *arch) {
    const char *n = t->name;
    float inv = 1.0f / sqrtf((float)t->ne[0]);
    if (has_suffix(n, "_norm.weight")) return (gen_spec){true, 0.8f, 1.2f};
    if (has_suffix(n, ".bias")) return (gen_spec){false, 0.3f, 0};
    if (!strcmp(n, "token_embd.weight")) return (gen_spec){false, strcmp(arch, "qwen2") ? 0.5f : 0.25f, 0};
    if (!strcmp(n, "output.weight")) return (gen_spec){false, 2.0f * inv, 0};
    if (has_suffix(n, "attn_q.weight") || has_suffix(n, "attn_k.weight")) return (gen_spec){false, 1.2f * inv, 0};
    return (gen_spec){false, inv, 0}; // attn_v, attn_output, ffn_gate, ffn_up; ffn_down (fan_in n_ff)
}

// ---- the plan -----------------------------------------------------------------------------------------
// The built-in vocabulary (--vocab builtin, for machines without ../shared): SentencePiece-style with byte
// fallback: <unk> <s> </s>, the 256 byte tokens, then U+2581 and the printable ASCII characters.
static ll_gguf *vocab_builtin(void) {
    enum { N = 3 + 256 + 1 + 94 };
    static char text[N][16];
    ll_str toks[N];
    float scores[N];
    int32_t types[N];
    for (int i = 0; i < N; i++) {
        if (i < 3) snprintf(text[i], 16, "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
        else if (i < 259) snprintf(text[i], 16, "<0x%02X>", i - 3);
        else if (i == 259) snprintf(text[i], 16, "\xe2\x96\x81");
        else snprintf(text[i], 16, "%c", '!' + (i - 260));
        toks[i] = (ll_str){text[i], strlen(text[i])};
        scores[i] = i < 259 ? 0.0f : -(float)(i - 259);
        types[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1;
    }
    ll_gguf *g = ll_gguf_new("builtin vocabulary");
    ll_gguf_set_str(g, "tokenizer.ggml.model", "llama");
    ll_gguf_set_arr_str(g, "tokenizer.ggml.tokens", N, toks);
    ll_gguf_set_arr(g, "tokenizer.ggml.scores", LL_GGUF_FLOAT32, N, scores);
    ll_gguf_set_arr(g, "tokenizer.ggml.token_type", LL_GGUF_INT32, N, types);
    ll_gguf_set_u32(g, "tokenizer.ggml.bos_token_id", 1);
    ll_gguf_set_u32(g, "tokenizer.ggml.eos_token_id", 2);
    ll_gguf_set_u32(g, "tokenizer.ggml.unknown_token_id", 0);
    return g;
}

static ll_status vocab_open(ll_gguf **out, const ll_preset *pr, const char *path, ll_error *err) {
    char buf[4096];
    if (path && !strcmp(path, "builtin")) {
        *out = vocab_builtin();
        return LL_OK;
    }
    if (!path) {
        const char *root = getenv("LLMLAB_SHARED");
        if (!root || !*root) root = "../shared";
        snprintf(buf, sizeof buf, "%s/models/vocab/ggml-vocab-%s.gguf", root, pr->vocab);
        path = buf;
    }
    ll_status s = ll_gguf_open(out, path, err);
    if (s) {
        ll_err_prefix(err, "vocab for %s: ", pr->name);
        if (s == LL_ERR_IO && err)
            snprintf(err->message + strlen(err->message), sizeof err->message - strlen(err->message),
                     " (pass --vocab FILE.gguf, or set LLMLAB_SHARED to the folder holding models/vocab/)");
        return s;
    }
    const ll_gguf_kv *kv = ll_gguf_find(*out, "tokenizer.ggml.tokens");
    if (!kv || kv->type != LL_GGUF_ARRAY || kv->arr_type != LL_GGUF_STRING || kv->arr_n == 0 ||
        kv->arr_n > INT32_MAX) {
        s = ll_err_set(err, LL_ERR_FORMAT, "%s: no usable tokenizer.ggml.tokens string array: not a vocab GGUF",
                       path);
        ll_gguf_free(*out);
        *out = NULL;
    }
    return s;
}

// Replace tokens/scores/token_type with copies padded by "[PADi]" (UNUSED, score -1e9) up to n.
static void vocab_pad(ll_gguf *g, const ll_gguf *vocab, uint64_t n) {
    const ll_gguf_kv *kt = ll_gguf_find(vocab, "tokenizer.ggml.tokens");
    uint64_t n0 = kt->arr_n;
    ll_str *text = calloc(n, sizeof *text);
    char *names = malloc((n - n0) * 24);
    LL_ASSERT(text && names);
    ll_gguf_arr_strings(kt, text);
    for (uint64_t i = n0; i < n; i++) {
        char *s = names + (i - n0) * 24;
        int len = snprintf(s, 24, "[PAD%llu]", (unsigned long long)i);
        text[i] = (ll_str){s, (uint64_t)len};
    }
    ll_gguf_set_arr_str(g, "tokenizer.ggml.tokens", n, text);
    free(names);
    free(text);
    const ll_gguf_kv *ks = ll_gguf_find(vocab, "tokenizer.ggml.scores");
    if (ks && ks->type == LL_GGUF_ARRAY && ks->arr_type == LL_GGUF_FLOAT32 && ks->arr_n == n0) {
        float *sc = malloc(n * sizeof *sc);
        LL_ASSERT(sc);
        memcpy(sc, ks->data, n0 * 4);
        for (uint64_t i = n0; i < n; i++) sc[i] = -1e9f;
        ll_gguf_set_arr(g, "tokenizer.ggml.scores", LL_GGUF_FLOAT32, n, sc);
        free(sc);
    }
    const ll_gguf_kv *ky = ll_gguf_find(vocab, "tokenizer.ggml.token_type");
    if (ky && ky->type == LL_GGUF_ARRAY && ky->arr_type == LL_GGUF_INT32 && ky->arr_n == n0) {
        int32_t *ty = malloc(n * sizeof *ty);
        LL_ASSERT(ty);
        memcpy(ty, ky->data, n0 * 4);
        for (uint64_t i = n0; i < n; i++) ty[i] = 5; // UNUSED
        ll_gguf_set_arr(g, "tokenizer.ggml.token_type", LL_GGUF_INT32, n, ty);
        free(ty);
    }
}

static void set_arch_keys(ll_gguf *g, const ll_preset *pr, int n_layer, uint32_t n_vocab, uint32_t type) {
    char k[128];
    const char *a = pr->arch;
    ll_gguf_set_str(g, "general.architecture", a);
    ll_gguf_set_str(g, "general.name", pr->name);
    // llama_ftype: ALL_F32 0, MOSTLY_F16 1, MOSTLY_BF16 32
    ll_gguf_set_u32(g, "general.file_type", type == LL_TYPE_F32 ? 0 : type == LL_TYPE_F16 ? 1 : 32);
#define KEY(suffix) (snprintf(k, sizeof k, "%s." suffix, a), k)
    ll_gguf_set_u32(g, KEY("context_length"), (uint32_t)pr->n_ctx);
    ll_gguf_set_u32(g, KEY("embedding_length"), (uint32_t)pr->n_embd);
    ll_gguf_set_u32(g, KEY("block_count"), (uint32_t)n_layer);
    ll_gguf_set_u32(g, KEY("feed_forward_length"), (uint32_t)pr->n_ff);
    ll_gguf_set_u32(g, KEY("attention.head_count"), (uint32_t)pr->n_head);
    ll_gguf_set_u32(g, KEY("attention.head_count_kv"), (uint32_t)pr->n_head_kv);
    ll_gguf_set_u32(g, KEY("rope.dimension_count"), (uint32_t)(pr->n_embd / pr->n_head));
    ll_gguf_set_f32(g, KEY("attention.layer_norm_rms_epsilon"), pr->rms_eps);
    ll_gguf_set_f32(g, KEY("rope.freq_base"), pr->rope_base);
    ll_gguf_set_u32(g, KEY("vocab_size"), n_vocab);
#undef KEY
}

// ne1 == 0: a vector of ne0.
static ll_status declare(ll_gguf *g, const char *name, uint32_t type, int64_t ne0, int64_t ne1, ll_error *err) {
    int64_t ne[2] = {ne0, ne1 ? ne1 : 1};
    return ll_gguf_add_tensor(g, name, type, ne1 ? 2 : 1, ne, NULL, err);
}

// llama.cpp's usual order; ne = {row length (fan_in), rows}.
static ll_status declare_tensors(ll_gguf *g, const ll_preset *pr, int n_layer, int64_t n_vocab, uint32_t type,
                                 ll_error *err) {
    const int64_t d = pr->n_embd, ff = pr->n_ff, kv = (int64_t)pr->n_embd / pr->n_head * pr->n_head_kv;
    const uint32_t F = LL_TYPE_F32, W = type;
    ll_status s = declare(g, "token_embd.weight", W, d, n_vocab, err);
    char n[96];
#define DECL(suffix, ty, a, b) \
    if (s == LL_OK) { snprintf(n, sizeof n, "blk.%d." suffix, i); s = declare(g, n, ty, a, b, err); }
    for (int i = 0; i < n_layer && s == LL_OK; i++) {
        DECL("attn_norm.weight", F, d, 0);
        DECL("attn_q.weight", W, d, d);
        DECL("attn_k.weight", W, d, kv);
        DECL("attn_v.weight", W, d, kv);
        if (pr->qkv_bias) {
            DECL("attn_q.bias", F, d, 0);
            DECL("attn_k.bias", F, kv, 0);
            DECL("attn_v.bias", F, kv, 0);
        }
        DECL("attn_output.weight", W, d, d);
        DECL("ffn_norm.weight", F, d, 0);
        DECL("ffn_gate.weight", W, d, ff);
        DECL("ffn_down.weight", W, ff, d);
        DECL("ffn_up.weight", W, d, ff);
    }
#undef DECL
    if (s == LL_OK) s = declare(g, "output_norm.weight", F, d, 0, err);
    if (s == LL_OK && !pr->tied_embeddings) s = declare(g, "output.weight", W, d, n_vocab, err);
    return s;
}

// Upper bound of the written file: the GGUF header, KVs and tensor infos, then each tensor padded.
static uint64_t predict_size(const ll_gguf *g) {
    uint64_t n = 4 + 4 + 8 + 8;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const ll_gguf_kv *kv = &g->kv[i];
        n += 8 + strlen(kv->key) + 4 + (kv->type == LL_GGUF_ARRAY ? 12 : 0) + kv->nbytes;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) n += 8 + strlen(g->tensors[i].name) + 4 + 8 * (uint64_t)g->tensors[i].n_dims + 4 + 8;
    n = ll_align_up(n, g->alignment);
    for (uint64_t i = 0; i < g->n_tensors; i++) n += ll_align_up(g->tensors[i].nbytes, g->alignment);
    return n;
}

ll_status ll_synth_plan(ll_gguf **out, const ll_synth_params *p, uint64_t *file_bytes, ll_error *err) {
    *out = NULL;
    const ll_preset *pr = ll_preset_find(p->preset ? p->preset : "");
    if (!pr)
        return ll_err_set(err, LL_ERR_ARG, "unknown preset '%s' (llmlab synth --help lists them)",
                          p->preset ? p->preset : "");
    if (p->type != LL_TYPE_F32 && p->type != LL_TYPE_F16 && p->type != LL_TYPE_BF16)
        return ll_err_set(err, LL_ERR_ARG, "synth writes F32, F16 or BF16, not %s (quantize the result with "
                          "llmlab quantize)", ll_type_name(p->type));
    int n_layer = p->n_layer > 0 ? p->n_layer : pr->n_layer;
    ll_gguf *vocab;
    ll_status s = vocab_open(&vocab, pr, p->vocab_path, err);
    if (s) return s;
    uint64_t n_vocab = ll_gguf_find(vocab, "tokenizer.ggml.tokens")->arr_n;
    bool pad = p->full_vocab && (uint64_t)pr->n_vocab > n_vocab;
    if (pad) n_vocab = (uint64_t)pr->n_vocab;

    ll_gguf *g = ll_gguf_new(pr->name);
    set_arch_keys(g, pr, n_layer, (uint32_t)n_vocab, p->type);
    for (uint64_t i = 0; i < vocab->n_kv; i++)
        if (!strncmp(vocab->kv[i].key, "tokenizer.", 10)) ll_gguf_copy_kv(g, &vocab->kv[i]);
    if (pad) vocab_pad(g, vocab, n_vocab);
    ll_gguf_free(vocab);
    s = declare_tensors(g, pr, n_layer, (int64_t)n_vocab, p->type, err);
    if (s) {
        ll_gguf_free(g);
        return s;
    }
    if (file_bytes) *file_bytes = predict_size(g);
    *out = g;
    return LL_OK;
}

// ---- writing ------------------------------------------------------------------------------------------
static ll_status check_disk(const char *path, uint64_t need, ll_error *err) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? ll_strndup(path, slash == path ? 1 : (size_t)(slash - path)) : ll_strdup(".");
    struct statvfs st;
    ll_status s = LL_OK;
    if (statvfs(dir, &st) != 0) {
        s = ll_err_set(err, LL_ERR_IO, "cannot write %s: directory %s: %s%s", path, dir, strerror(errno),
                       errno == ENOENT ? " (create it first)" : "");
    } else {
        uint64_t avail;
        if (!ll_mul_u64((uint64_t)st.f_bavail, (uint64_t)st.f_frsize, &avail)) avail = UINT64_MAX;
        if (avail < need) {
            char a[32], b[32];
            ll_fmt_bytes(a, sizeof a, (double)need);
            ll_fmt_bytes(b, sizeof b, (double)avail);
            s = ll_err_set(err, LL_ERR_IO, "%s needs %s (%llu bytes) but %s has only %s free: free space or "
                           "write elsewhere (--layers N makes a smaller file)", path, a,
                           (unsigned long long)need, dir, b);
        }
    }
    free(dir);
    return s;
}

// F16C's VCVTPS2PH (round to nearest even) gives the bits of ll_fp32_to_fp16 for every non-NaN input, so the
// file is the same with or without it (test_synth checks F16 files against the scalar conversion).
static void to_fp16(const float *x, uint16_t *h, size_t n) {
    size_t i = 0;
#ifdef __F16C__
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(h + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
#endif
    for (; i < n; i++) h[i] = ll_fp32_to_fp16(x[i]);
}

// Generate one tensor's values piece by piece, convert to its type, append to the writer.
static ll_status write_tensor(ll_gguf_writer *w, const ll_gguf_tensor *t, gen_spec gs, uint64_t key, float *f32,
                              uint16_t *half, ll_progress *prog, ll_error *err) {
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) n *= (uint64_t)t->ne[d]; // validated by add_tensor
    for (uint64_t at = 0; at < n; at += SYNTH_CHUNK) {
        size_t k = (size_t)(n - at < SYNTH_CHUNK ? n - at : SYNTH_CHUNK);
        if (gs.uniform) synth_uniform(key, at, f32, k, gs.a, gs.b);
        else {
            ll_synth_normal(key, at, f32, k);
            for (size_t i = 0; i < k; i++) f32[i] *= gs.a;
        }
        const void *src = f32;
        size_t bytes = k * 4;
        if (t->type == LL_TYPE_F16) {
            to_fp16(f32, half, k);
            src = half, bytes = k * 2;
        } else if (t->type == LL_TYPE_BF16) {
            for (size_t i = 0; i < k; i++) half[i] = ll_fp32_to_bf16(f32[i]);
            src = half, bytes = k * 2;
        }
        ll_status s = ll_gguf_writer_write(w, src, bytes, err);
        if (s) return s;
        if (prog) ll_progress_add(prog, bytes);
    }
    return LL_OK;
}

ll_status ll_synth_write(const char *path, const ll_synth_params *p, ll_error *err) {
    ll_gguf *g;
    uint64_t need;
    ll_status s = ll_synth_plan(&g, p, &need, err);
    if (s) return s;
    if ((s = check_disk(path, need, err))) goto done;
    float *f32 = ll_malloc(SYNTH_CHUNK * sizeof *f32, err);
    uint16_t *half = f32 ? ll_malloc(SYNTH_CHUNK * sizeof *half, err) : NULL;
    ll_gguf_writer *w = NULL;
    if (!half) { s = LL_ERR_NOMEM; goto free_bufs; }
    if ((s = ll_gguf_writer_open(&w, path, g, err))) goto free_bufs;
    ll_progress prog;
    uint64_t total = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) total += g->tensors[i].nbytes;
    bool show = p->progress && total >= (64u << 20); // small files finish before a bar says anything
    if (show) ll_progress_init(&prog, "synth", total);
    const char *arch = ll_preset_find(p->preset)->arch;
    for (uint64_t i = 0; i < g->n_tensors && s == LL_OK; i++) {
        const ll_gguf_tensor *t = &g->tensors[i];
        s = write_tensor(w, t, gen_for(t, arch), tensor_key(p->seed, t->name), f32, half,
                         show ? &prog : NULL, err);
    }
    if (s == LL_OK) s = ll_gguf_writer_finish(w, err);
    else ll_gguf_writer_abort(w);
    if (s == LL_OK && show) ll_progress_done(&prog);
free_bufs:
    free(half);
    free(f32);
done:
    ll_gguf_free(g);
    return s;
}
