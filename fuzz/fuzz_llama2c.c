// fuzz_llama2c.c — libFuzzer target for the llama2.c importer (`make fuzz`): a checkpoint and its tokenizer.bin
// in one input ([u32 checkpoint length][checkpoint][tokenizer.bin]), handed to ll_llama2c_open as two files
// (memfds). Each input is refused with a message naming one of the files, or imports into a GGUF whose tensor
// views are readable and whose vocabulary loads, tokenizes and detokenizes. -DLL_FUZZ_MAKE_CORPUS: the seeds.
#include "formats/llama2c.h"
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile uint64_t g_sink; // keeps the reads below from being optimized away

// A memfd holding data, and its /proc path; -1 on failure (then the input is skipped).
static int mem_file(const char *name, const uint8_t *data, size_t n, char *path, size_t cap) {
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0) return -1;
    if (n && write(fd, data, n) != (ssize_t)n) { close(fd); return -1; }
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}

static void exercise_vocab(const ll_gguf *g) {
    ll_tokenizer *t;
    ll_error err;
    if (ll_tokenizer_init(&t, g, &err) != LL_OK) return; // (the importer wrote the keys; init may still refuse)
    static const char text[] = "Once upon a time, <s> a\xc3\xa9\xe2\x96\x81 x";
    int32_t ids[128];
    int n = ll_tokenizer_encode(t, text, sizeof text - 1, true, true, ids, 128);
    if (n > 128) abort();
    char buf[1024];
    if (n > 0) g_sink += (uint64_t)ll_tokenizer_detokenize(t, ids, n, false, true, buf, sizeof buf);
    for (int32_t i = 0; i < ll_tokenizer_n_vocab(t) && i < 64; i++) g_sink += (uint64_t)ll_tokenizer_piece(t, i, true, buf, 64);
    ll_tokenizer_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 4) return 0;
    uint32_t cl;
    memcpy(&cl, data, 4);
    size_t ckpt_n = cl < size - 4 ? cl : size - 4;
    char cpath[64], tpath[64];
    int cfd = mem_file("ckpt", data + 4, ckpt_n, cpath, sizeof cpath);
    int tfd = mem_file("tok", data + 4 + ckpt_n, size - 4 - ckpt_n, tpath, sizeof tpath);
    if (cfd >= 0 && tfd >= 0) {
        ll_gguf *g;
        ll_error err;
        if (ll_llama2c_open(&g, cpath, tpath, &err) != LL_OK) {
            if (!strstr(err.message, cpath) && !strstr(err.message, tpath)) abort(); // messages name the file
        } else {
            for (uint64_t i = 0; i < g->n_tensors; i++) {
                const ll_gguf_tensor *t = &g->tensors[i];
                const uint8_t *p = t->data;
                if (!p || !t->nbytes || ll_gguf_find_tensor(g, t->name) != t) abort();
                g_sink += p[0] + p[t->nbytes - 1]; // views inside the mapped checkpoint (else a fault)
            }
            exercise_vocab(g);
            ll_gguf_free(g);
        }
    }
    if (cfd >= 0) close(cfd);
    if (tfd >= 0) close(tfd);
    return 0;
}

#ifdef LL_FUZZ_MAKE_CORPUS
// ---- seed corpus: a tiny legacy checkpoint (dim 8, hidden 16, 1 layer, 2/2 heads, vocab 4, seq_len 4) with
// its 4-token tokenizer; the same with a separate classifier; cut short; a tokenizer one token short.
static void put(FILE *f, const void *p, size_t n) { fwrite(p, 1, n, f); }
static void put32(FILE *f, int32_t v) { put(f, &v, 4); }

// 712 floats for the shared classifier: tok 32, rms_att 8, wq/wk/wv/wo 4 x 64, rms_ffn 8, w1/w2/w3 3 x 128,
// rms_final 8, freq_cis 16; +32 for a separate wcls.
static size_t ckpt(uint8_t *b, bool shared) {
    int32_t h[7] = {8, 16, 1, 2, 2, shared ? 4 : -4, 4};
    size_t n = 0, nf = 712 + (shared ? 0 : 32);
    memcpy(b, h, sizeof h), n += sizeof h;
    for (size_t i = 0; i < nf; i++, n += 4) {
        float v = (float)((int)(i * 37 % 17) - 8) / 16.0f;
        memcpy(b + n, &v, 4);
    }
    return n;
}

static size_t tok(uint8_t *b, int n_tok) {
    static const char *const t[] = {"<unk>", "<s>", "</s>", " a"};
    size_t n = 0;
    int32_t maxlen = 5;
    memcpy(b, &maxlen, 4), n += 4;
    for (int i = 0; i < n_tok; i++) {
        float s = (float)-i;
        int32_t len = (int32_t)strlen(t[i]);
        memcpy(b + n, &s, 4), memcpy(b + n + 4, &len, 4), memcpy(b + n + 8, t[i], (size_t)len);
        n += 8 + (size_t)len;
    }
    return n;
}

static void seed(const char *dir, const char *name, bool shared, size_t cut, int n_tok) {
    static uint8_t c[8192], t[256];
    size_t cn = ckpt(c, shared), tn = tok(t, n_tok);
    if (cut) cn -= cut;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return;
    put32(f, (int32_t)cn);
    put(f, c, cn);
    put(f, t, tn);
    fclose(f);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "fuzz/corpus-llama2c";
    seed(dir, "legacy-shared", true, 0, 4);
    seed(dir, "legacy-wcls", false, 0, 4);
    seed(dir, "truncated", true, 100, 4);
    seed(dir, "tokenizer-short", true, 0, 3);
    return 0;
}
#endif
