// cmd_convert.c — `llmlab convert`: a llama2.c checkpoint (+ tokenizer.bin) to an F32 GGUF, through the
// importer (formats/llama2c.c) and the atomic GGUF writer.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "formats/llama2c.h"

static void usage(FILE *f) {
    fprintf(f, "usage: llmlab convert IN.bin [--tokenizer TOK.bin] [-o OUT.gguf]\n\n"
               "Converts a llama2.c checkpoint (legacy format, or export.py --version 1) and its llama2.c tokenizer\n"
               "to a GGUF (arch llama, all tensors F32, bit-identical weights) that llama.cpp and llmlab read.\n\n"
               "  --tokenizer TOK.bin   the tokenizer (default: tokenizer.bin next to IN)\n"
               "  -o OUT.gguf           output path (default: IN with .bin replaced by .gguf); written atomically\n");
}

// IN minus a ".bin" suffix, plus ".gguf".
static char *default_output(const char *in) {
    size_t n = strlen(in);
    if (n > 4 && !strcmp(in + n - 4, ".bin")) n -= 4;
    char *r = malloc(n + 6);
    if (!r) return NULL;
    memcpy(r, in, n);
    memcpy(r + n, ".gguf", 6);
    return r;
}

int cmd_convert(int argc, char **argv) {
    const char *cmd = "convert", *in = NULL, *tok = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--tokenizer") || !strcmp(a, "-t")) {
            if (!(tok = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (!(out = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "llmlab convert: unknown option '%s' (see llmlab convert --help)\n", a);
            return 1;
        } else if (!in) {
            in = a;
        } else {
            fprintf(stderr, "llmlab convert: one input checkpoint only ('%s' and '%s')\n", in, a);
            return 1;
        }
    }
    if (!in) {
        usage(stderr);
        return 1;
    }
    struct stat st;
    if (stat(in, &st) == 0 && !S_ISREG(st.st_mode)) {
        fprintf(stderr, "llmlab convert: %s is not a regular file; give a llama2.c checkpoint\n", in);
        return 1;
    }
    FILE *probe = fopen(in, "rb");
    if (probe) fclose(probe);
    if (probe && !ll_llama2c_probe(in)) {
        fprintf(stderr, "llmlab convert: %s is already a GGUF file\n", in);
        return 1;
    }
    char *def = out ? NULL : default_output(in);
    if (!out) out = def;
    if (!out || !strcmp(out, in)) {
        fprintf(stderr, "llmlab convert: give an output path with -o\n");
        free(def);
        return 1;
    }
    // By device and inode: "d/./x.bin" or a link names the input as well as "d/x.bin" does.
    const char *clash = ll_same_file(in, out) ? in : ll_same_file(tok, out) ? tok : NULL;
    if (clash) {
        fprintf(stderr, "llmlab convert: %s is the input file %s; give another output path with -o\n", out, clash);
        free(def);
        return 1;
    }
    ll_error err;
    ll_gguf *g;
    int rc = 0;
    if (ll_llama2c_open(&g, in, tok, &err)) {
        rc = cli_fail(cmd, &err);
    } else {
        if (ll_gguf_write_file(g, out, &err)) {
            rc = cli_fail(cmd, &err);
        } else {
            uint32_t dim = 0, layers = 0, heads = 0, kv = 0, ff = 0;
            ll_gguf_get_u32(g, "llama.embedding_length", &dim, NULL);
            ll_gguf_get_u32(g, "llama.block_count", &layers, NULL);
            ll_gguf_get_u32(g, "llama.attention.head_count", &heads, NULL);
            ll_gguf_get_u32(g, "llama.attention.head_count_kv", &kv, NULL);
            ll_gguf_get_u32(g, "llama.feed_forward_length", &ff, NULL);
            const ll_gguf_kv *toks = ll_gguf_find(g, "tokenizer.ggml.tokens");
            fprintf(stderr, "llmlab convert: wrote %s: llama, dim %u, %u layers, %u/%u heads, ffn %u, vocab %llu, "
                            "%llu tensors F32\n", out, dim, layers, heads, kv, ff,
                    (unsigned long long)(toks ? toks->arr_n : 0), (unsigned long long)g->n_tensors);
        }
        ll_gguf_free(g);
    }
    free(def);
    return rc;
}
