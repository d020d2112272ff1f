// fuzz_tokenizer.c — libFuzzer target for the tokenizers on real vocabularies (`make fuzz`): the vocab-only GGUFs
// of $LLMLAB_SHARED/models/vocab (llama.cpp's test vocabularies: SPM and the BPE pre-tokenizers) are loaded once;
// the first input byte picks the vocabulary and the flags, the rest is the text. Invariants: the id count honours
// the cap contract, ids are in range, every piece fits its bound, detokenize and the streaming detokenizer
// accept every id sequence. Without the vocabularies every input is skipped (a note says so once).
#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_TOK_MAX_VOCABS 16
#define FUZZ_TOK_CAP 8192

static volatile uint64_t g_sink;
static ll_gguf *g_gguf[FUZZ_TOK_MAX_VOCABS];
static ll_tokenizer *g_tok[FUZZ_TOK_MAX_VOCABS];
static int g_n;
static int32_t g_ids[FUZZ_TOK_CAP];
static char g_buf[4 * FUZZ_TOK_CAP * 64];

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *shared = getenv("LLMLAB_SHARED");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/models/vocab", shared && *shared ? shared : "../shared");
    DIR *d = opendir(dir);
    char *names[64];
    int nn = 0;
    for (struct dirent *e; d && (e = readdir(d)) && nn < 64;) {
        size_t l = strlen(e->d_name);
        if (l > 5 && !strcmp(e->d_name + l - 5, ".gguf")) names[nn++] = strdup(e->d_name);
    }
    if (d) closedir(d);
    qsort(names, (size_t)nn, sizeof *names, by_name); // the byte -> vocabulary map is the same on every machine
    for (int i = 0; i < nn; i++) {
        char path[2048];
        ll_error err;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        free(names[i]);
        if (g_n == FUZZ_TOK_MAX_VOCABS) continue;
        if (ll_gguf_open(&g_gguf[g_n], path, &err) != LL_OK) { fprintf(stderr, "fuzz_tokenizer: %s\n", err.message); continue; }
        if (ll_tokenizer_init(&g_tok[g_n], g_gguf[g_n], &err) != LL_OK) {
            fprintf(stderr, "fuzz_tokenizer: %s\n", err.message);
            ll_gguf_free(g_gguf[g_n]);
            continue;
        }
        g_n++;
    }
    fprintf(stderr, "fuzz_tokenizer: %d vocabularies from %s%s\n", g_n, dir, g_n ? "" : " (none: every input is skipped; set LLMLAB_SHARED)");
    return 0;
}

static void check_pieces(const ll_tokenizer *t, const int32_t *ids, int n) {
    int nv = ll_tokenizer_n_vocab(t);
    size_t total = 0;
    char piece[1024];
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= nv) abort();
        ll_str s = ll_tokenizer_token_text(t, ids[i]);
        int p = ll_tokenizer_piece(t, ids[i], true, piece, sizeof piece);
        // a piece is the stored text decoded (U+2581 -> ' ', <0xXX> -> 1 byte, GPT-2 byte chars -> 1 byte each):
        // never longer than the stored text
        if (p < 0 ? (uint64_t)-p > s.len : (uint64_t)p > s.len) abort();
        int q = ll_tokenizer_piece(t, ids[i], false, piece, sizeof piece);
        if (q > p && p >= 0) abort(); // special = false only drops control texts
        total += (size_t)(p < 0 ? -p : p);
    }
    int n_det = ll_tokenizer_detokenize(t, ids, n, false, true, g_buf, (int)sizeof g_buf);
    // detokenize concatenates the pieces and only removes spaces (the SPM prefix, BPE clean-up)
    if (n_det < 0 || (size_t)n_det > total) abort();
    g_sink += (uint64_t)ll_tokenizer_detokenize(t, ids, n, true, false, g_buf, (int)sizeof g_buf);
    if (n > 0 && ll_tokenizer_detokenize(t, ids, n, false, true, g_buf, 0) > 0) abort(); // cap 0: -(needed) or 0
    ll_detok *dt = ll_detok_init_tok(t);
    if (!dt) abort();
    for (int i = 0; i < n; i++) g_sink += strlen(ll_detok_push(dt, ids[i]));
    g_sink += strlen(ll_detok_flush(dt));
    ll_detok_free(dt);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_n || size < 1) return 0;
    const ll_tokenizer *t = g_tok[(data[0] & 0x3f) % g_n];
    bool add_special = data[0] & 0x40, parse_special = data[0] & 0x80;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    int n = ll_tokenizer_encode(t, text, len, add_special, parse_special, g_ids, FUZZ_TOK_CAP);
    if (n > FUZZ_TOK_CAP) abort();
    if (n < 0) return 0; // more than the cap: -(needed)
    // the same text with a cap one short must say how many it needs
    if (n > 0) {
        int m = ll_tokenizer_encode(t, text, len, add_special, parse_special, g_ids, n - 1);
        if (m != -n) abort();
        if (ll_tokenizer_encode(t, text, len, add_special, parse_special, g_ids, FUZZ_TOK_CAP) != n) abort();
    }
    check_pieces(t, g_ids, n);
    // arbitrary ids too: the input's bytes as ids in range
    int k = 0;
    for (size_t i = 1; i + 1 < size && k < 256; i += 2) g_ids[k++] = (int32_t)(((unsigned)data[i] << 8 | data[i + 1]) % (unsigned)ll_tokenizer_n_vocab(t));
    check_pieces(t, g_ids, k);
    return 0;
}
