// test_tokenizer.c — tokenizer against llama.cpp: its vocab test vectors (.inp/.out), the golden JSONs, prompt
// ids and the dev-text id hash; detokenization (full and streaming); pre-tokenizer splits checked by hand
// against Python's regex module; malformed vocabularies; load time of a 128k-token BPE vocabulary.
#include "testutil.h"

#include <cjson/cJSON.h>
#include <unistd.h>

#include "core/sha256.h"
#include "tokenizer/tok_internal.h"

typedef struct loaded {
    ll_gguf *g;
    ll_tokenizer *t;
} loaded;

static loaded load(const char *path) {
    loaded l = {0};
    ll_error err;
    if (ll_gguf_open(&l.g, path, &err) != LL_OK) fail_msg("%s", err.message);
    if (ll_tokenizer_init(&l.t, l.g, &err) != LL_OK) fail_msg("%s", err.message);
    return l;
}

static void unload(loaded *l) {
    ll_tokenizer_free(l->t);
    ll_gguf_free(l->g);
}

// Tokenize into a fresh array (checks the -(needed) contract on the way); *n = count.
static int32_t *tokenize(const ll_tokenizer *t, const char *s, size_t len, bool add_special, bool parse_special,
                         int *n) {
    int need = ll_tokenizer_encode(t, s, len, add_special, parse_special, NULL, 0);
    int cap = need < 0 ? -need : need;
    int32_t *ids = malloc(sizeof *ids * (size_t)(cap + 1));
    *n = ll_tokenizer_encode(t, s, len, add_special, parse_special, ids, cap);
    assert_int_equal(*n, cap);
    return ids;
}

static bool ids_equal(const int32_t *a, int na, const int32_t *b, int nb) {
    return na == nb && (na == 0 || memcmp(a, b, sizeof *a * (size_t)na) == 0);
}

static void print_ids(const char *what, const int32_t *v, int n) {
    printf("#   %s:", what);
    for (int i = 0; i < n && i < 40; i++) printf(" %d", v[i]);
    printf("%s\n", n > 40 ? " ..." : "");
}

// All pushes of ids through a streaming detokenizer, concatenated, then the flush.
static char *stream_detok(const ll_tokenizer *t, const int32_t *ids, int n, bool strip) {
    ll_detok *d = ll_detok_init_tok(t);
    assert_non_null(d);
    ll_detok_set_strip_leading_space(d, strip);
    size_t cap = 256, len = 0;
    char *out = malloc(cap);
    for (int i = 0; i <= n; i++) {
        const char *p = i < n ? ll_detok_push(d, ids[i]) : ll_detok_flush(d);
        size_t k = strlen(p);
        while (len + k + 1 > cap) out = realloc(out, cap *= 2);
        memcpy(out + len, p, k);
        len += k;
    }
    out[len] = 0;
    ll_detok_free(d);
    return out;
}

// ---- llama.cpp's vocab vectors: NAME.inp (inputs split on "\n__ggml_vocab_test__\n"), NAME.out (one line of
// ids per input) ------------------------------------------------------------------------------------------
static void run_vocab_file(const char *name, bool spm) {
    char rel[256];
    snprintf(rel, sizeof rel, "models/vocab/%s", name);
    TU_NEED_SHARED(gguf, rel);
    snprintf(rel, sizeof rel, "models/vocab/%s.inp", name);
    TU_NEED_SHARED(inp_path, rel);
    snprintf(rel, sizeof rel, "models/vocab/%s.out", name);
    TU_NEED_SHARED(out_path, rel);
    loaded l = load(gguf);
    char *inp = tu_read_file(inp_path, NULL), *out = tu_read_file(out_path, NULL);
    static const char sep[] = "\n__ggml_vocab_test__\n";
    int n_case = 0, n_ok = 0, n_round = 0;
    char *p = inp, *line = out;
    for (char *e; (e = strstr(p, sep)) != NULL; p = e + strlen(sep), n_case++) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        int32_t want[512];
        int nw = 0;
        for (char *q = line, *end; q < nl; q = end) {
            long v = strtol(q, &end, 10);
            if (end == q) break;
            want[nw++] = (int32_t)v;
        }
        line = nl + 1;
        int n;
        int32_t *got = tokenize(l.t, p, (size_t)(e - p), false, false, &n);
        if (ids_equal(got, n, want, nw)) n_ok++;
        else printf("# %s case %d mismatch\n", name, n_case), print_ids("want", want, nw), print_ids("got ", got, n);
        // The pieces give the input back (SPM: minus the space prefix, as llama_detokenize does).
        char *text = stream_detok(l.t, got, n, spm);
        n_round += strlen(text) == (size_t)(e - p) && memcmp(text, p, (size_t)(e - p)) == 0;
        free(text);
        free(got);
    }
    printf("# note: %s: %d/%d inputs give the .out ids; %d/%d round-trip through the streaming detokenizer\n", name,
           n_ok, n_case, n_round, n_case);
    assert_int_equal(n_case, 46);
    assert_int_equal(n_ok, n_case);
    assert_int_equal(n_round, n_case);
    free(inp), free(out);
    unload(&l);
}

static void test_vocab_llama_spm(void **state) { (void)state; run_vocab_file("ggml-vocab-llama-spm.gguf", true); }
static void test_vocab_gpt2(void **state) { (void)state; run_vocab_file("ggml-vocab-gpt-2.gguf", false); }

// ---- golden JSONs: ids (add_special = false) and ids_add_special, through the model file named inside --------
static bool json_ids_equal(const cJSON *arr, const int32_t *ids, int n) {
    if (cJSON_GetArraySize(arr) != n) return false;
    for (int i = 0; i < n; i++)
        if (cJSON_GetArrayItem(arr, i)->valueint != ids[i]) return false;
    return true;
}

static void run_golden_json(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "golden/tokenizer/%s", name);
    TU_NEED_SHARED(path, rel);
    char *js = tu_read_file(path, NULL);
    cJSON *root = cJSON_Parse(js);
    assert_non_null(root);
    snprintf(rel, sizeof rel, "golden/%s", cJSON_GetObjectItem(root, "model_file")->valuestring);
    TU_NEED_SHARED(model, rel);
    loaded l = load(model);
    const cJSON *cases = cJSON_GetObjectItem(root, "cases"), *c;
    int n_case = 0, n_ok = 0, n_ok_special = 0;
    cJSON_ArrayForEach(c, cases) {
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        int n;
        int32_t *ids = tokenize(l.t, text, strlen(text), false, false, &n);
        bool ok = json_ids_equal(cJSON_GetObjectItem(c, "ids"), ids, n);
        if (!ok) printf("# %s case %d: ids differ\n", name, n_case), print_ids("got", ids, n);
        n_ok += ok;
        free(ids);
        ids = tokenize(l.t, text, strlen(text), true, false, &n);
        n_ok_special += json_ids_equal(cJSON_GetObjectItem(c, "ids_add_special"), ids, n);
        free(ids);
        n_case++;
    }
    printf("# note: %s: ids %d/%d, ids_add_special %d/%d\n", name, n_ok, n_case, n_ok_special, n_case);
    assert_int_equal(n_case, 46);
    assert_int_equal(n_ok, n_case);
    assert_int_equal(n_ok_special, n_case);
    unload(&l);
    cJSON_Delete(root);
    free(js);
}

static void test_golden_llama_spm(void **state) { (void)state; run_golden_json("llama-spm.json"); }
static void test_golden_gpt2(void **state) { (void)state; run_golden_json("gpt-2.json"); }
static void test_golden_stories260k(void **state) { (void)state; run_golden_json("stories260K.json"); }

// ---- prompts of the logits goldens (add_special = true, as llama.cpp tokenized them) ----------------------
static void run_prompt(const char *model_rel, const char *prompt_rel, const char *ids_rel) {
    TU_NEED_SHARED(model, model_rel);
    TU_NEED_SHARED(prompt_path, prompt_rel);
    TU_NEED_SHARED(ids_path, ids_rel);
    loaded l = load(model);
    size_t len = 0;
    char *prompt = tu_read_file(prompt_path, &len), *want_txt = tu_read_file(ids_path, NULL);
    int32_t want[256];
    int nw = 0;
    for (char *q = want_txt, *end;; q = end) {
        long v = strtol(q, &end, 10);
        if (end == q) break;
        want[nw++] = (int32_t)v;
    }
    int n;
    int32_t *got = tokenize(l.t, prompt, len, true, false, &n);
    if (!ids_equal(got, n, want, nw)) print_ids("want", want, nw), print_ids("got ", got, n);
    assert_true(ids_equal(got, n, want, nw));
    free(got), free(prompt), free(want_txt);
    unload(&l);
}

static void test_prompt_ids(void **state) {
    (void)state;
    run_prompt("golden/stories260K/stories260K.gguf", "golden/stories260K/prompt.txt",
               "golden/stories260K/stories260K.ids.txt");
    run_prompt("golden/tiny-qwen2/tiny-qwen2-f16.gguf", "golden/tiny-qwen2/prompt.txt",
               "golden/tiny-qwen2/tiny-qwen2.ids.txt");
    run_prompt("golden/tiny-llama/tiny-llama-f16.gguf", "golden/tiny-llama/prompt.txt",
               "golden/tiny-llama/tiny-llama.ids.txt");
}

// The whole perplexity text (403 KB, one SPM fragment): count and sha256 of the ids as llama.cpp gave them.
static void test_dev_text_ids(void **state) {
    (void)state;
    TU_NEED_SHARED(model, "models/stories260K.gguf");
    TU_NEED_SHARED(text_path, "golden/data/tinystories_dev.txt");
    loaded l = load(model);
    size_t len = 0;
    char *text = tu_read_file(text_path, &len);
    if (len > 0 && text[len - 1] == '\n') len--; // llama-perplexity -f drops one trailing newline
    double t0 = ll_time_s();
    int n;
    int32_t *ids = tokenize(l.t, text, len, true, false, &n);
    double dt = ll_time_s() - t0;
    ll_sha256 c;
    ll_sha256_init(&c);
    for (int i = 0; i < n; i++) {
        char b[16];
        int k = snprintf(b, sizeof b, i + 1 < n ? "%d " : "%d\n", ids[i]);
        ll_sha256_update(&c, b, (size_t)k);
    }
    uint8_t dg[32];
    char hex[65];
    ll_sha256_final(&c, dg);
    ll_sha256_hex(dg, hex);
    printf("# note: dev text: %d ids in %.0f ms (twice: sizing + filling)\n", n, dt * 1e3);
    assert_int_equal(n, 197096);
    assert_string_equal(hex, "cb819829b8f72cd06dcda1e99320281f0d615e2c1a0fc3349841f79f3bb9faba");
    free(ids), free(text);
    unload(&l);
}

// ---- detokenization against llama.cpp's texts of the greedy goldens ---------------------------------------
static int32_t *json_ids(const cJSON *arr, int *n) {
    *n = cJSON_GetArraySize(arr);
    int32_t *v = malloc(sizeof *v * (size_t)(*n + 1));
    for (int i = 0; i < *n; i++) v[i] = cJSON_GetArrayItem(arr, i)->valueint;
    return v;
}

static void run_greedy(const loaded *l, const char *rel) {
    TU_NEED_SHARED(path, rel);
    char *js = tu_read_file(path, NULL);
    cJSON *root = cJSON_Parse(js);
    int np, ng;
    int32_t *p = json_ids(cJSON_GetObjectItem(root, "prompt_ids"), &np);
    int32_t *gen = json_ids(cJSON_GetObjectItem(root, "generated_ids"), &ng);
    int32_t *all = malloc(sizeof *all * (size_t)(np + ng));
    memcpy(all, p, sizeof *p * (size_t)np);
    memcpy(all + np, gen, sizeof *gen * (size_t)ng);
    char buf[16384];
    // detok_generated = llama_detokenize(generated, remove_special = false, unparse_special = false)
    int n = ll_tokenizer_detokenize(l->t, gen, ng, false, false, buf, sizeof buf - 1);
    assert_true(n >= 0);
    buf[n] = 0;
    assert_string_equal(buf, cJSON_GetObjectItem(root, "detok_generated")->valuestring);
    // detok_full = llama_detokenize(prompt + generated, remove_special = true): BOS dropped, space kept
    n = ll_tokenizer_detokenize(l->t, all, np + ng, true, false, buf, sizeof buf - 1);
    assert_true(n >= 0);
    buf[n] = 0;
    assert_string_equal(buf, cJSON_GetObjectItem(root, "detok_full")->valuestring);
    assert_int_equal(ll_tokenizer_detokenize(l->t, all, np + ng, true, false, buf, 10), -(int)strlen(buf));
    // generated_pieces = the pieces concatenated: what the streaming detokenizer prints
    char *s = stream_detok(l->t, gen, ng, false);
    assert_string_equal(s, cJSON_GetObjectItem(root, "generated_pieces")->valuestring);
    free(s), free(all), free(gen), free(p);
    cJSON_Delete(root);
    free(js);
}

static void test_greedy_detok(void **state) {
    (void)state;
    TU_NEED_SHARED(model, "models/stories260K.gguf");
    loaded l = load(model);
    run_greedy(&l, "golden/stories260K/greedy200-bos.json");
    run_greedy(&l, "golden/stories260K/greedy200-once-upon-a-time.json");
    unload(&l);
}

// ---- streaming detokenizer: characters split over byte tokens, malformed bytes, the leading space ----------
static void test_stream_detok(void **state) {
    (void)state;
    TU_NEED_SHARED(model, "models/stories260K.gguf");
    loaded l = load(model);
    const char *text = "\xe4\xb8\xad\xf0\x9f\x98\x80"; // 中😀: byte fallback in this 512-token vocabulary
    int n;
    int32_t *ids = tokenize(l.t, text, strlen(text), false, false, &n);
    assert_int_equal(n, 1 + 3 + 4); // "▁" then one <0xXX> per byte
    ll_detok *d = ll_detok_init_tok(l.t);
    ll_detok_set_strip_leading_space(d, true);
    const char *want[8] = {"", "", "", "\xe4\xb8\xad", "", "", "", "\xf0\x9f\x98\x80"};
    for (int i = 0; i < n; i++) assert_string_equal(ll_detok_push(d, ids[i]), want[i]);
    assert_string_equal(ll_detok_flush(d), "");
    // A lead byte whose continuation never comes: U+FFFD at flush; before a normal piece: U+FFFD then the piece.
    int32_t e2 = ll_tokenizer_find(l.t, "<0xE2>"), ff = ll_tokenizer_find(l.t, "<0xFF>"), a = ll_tokenizer_find(l.t, "a");
    assert_true(e2 >= 0 && ff >= 0 && a >= 0);
    assert_string_equal(ll_detok_push(d, e2), "");
    assert_string_equal(ll_detok_flush(d), "\xef\xbf\xbd");
    assert_string_equal(ll_detok_push(d, e2), "");
    assert_string_equal(ll_detok_push(d, a), "\xef\xbf\xbd" "a");
    assert_string_equal(ll_detok_push(d, ff), "\xef\xbf\xbd"); // never valid in UTF-8
    assert_string_equal(ll_detok_push(d, ll_tokenizer_bos(l.t)), ""); // control: no text
    assert_string_equal(ll_detok_push(d, -5), "");
    ll_detok_free(d);
    // Leading space: kept by default, dropped once with the flag (SPM only).
    free(ids);
    ids = tokenize(l.t, "Once upon", 9, true, false, &n);
    char *s = stream_detok(l.t, ids, n, false);
    assert_string_equal(s, " Once upon");
    free(s);
    s = stream_detok(l.t, ids, n, true);
    assert_string_equal(s, "Once upon");
    free(s), free(ids);
    unload(&l);
}

// ---- special tokens: control text only with parse_special; ids, flags, EOG --------------------------------
static void test_special(void **state) {
    (void)state;
    TU_NEED_SHARED(spm, "models/vocab/ggml-vocab-llama-spm.gguf");
    TU_NEED_SHARED(bpe, "models/vocab/ggml-vocab-gpt-2.gguf");
    loaded l = load(spm);
    int n;
    int32_t *ids = tokenize(l.t, "<s>Hello</s>", 12, false, true, &n);
    int32_t want[] = {1, 15043, 2};
    assert_true(ids_equal(ids, n, want, 3));
    free(ids);
    ids = tokenize(l.t, "<s>Hello</s>", 12, false, false, &n);
    assert_true(n > 3 && ids[0] != 1); // plain text
    free(ids);
    assert_int_equal(ll_tokenizer_bos(l.t), 1);
    assert_int_equal(ll_tokenizer_eos(l.t), 2);
    assert_true(ll_tokenizer_add_bos(l.t));
    assert_true(ll_tokenizer_is_eog(l.t, 2) && !ll_tokenizer_is_eog(l.t, 1));
    assert_true(ll_tokenizer_is_control(l.t, 1) && !ll_tokenizer_is_control(l.t, 15043));
    assert_int_equal(ll_tokenizer_find(l.t, "<unk>"), 0);
    ll_str s = ll_tokenizer_token_text(l.t, 15043);
    assert_true(ll_str_eq(s, "\xe2\x96\x81Hello"));
    char buf[16];
    assert_int_equal(ll_tokenizer_piece(l.t, 15043, false, buf, sizeof buf), 6);
    assert_memory_equal(buf, " Hello", 6);
    assert_int_equal(ll_tokenizer_piece(l.t, 15043, false, buf, 3), -6);
    assert_int_equal(ll_tokenizer_piece(l.t, 1, false, buf, sizeof buf), 0);
    assert_int_equal(ll_tokenizer_piece(l.t, 1, true, buf, sizeof buf), 3);
    assert_int_equal(ll_tokenizer_piece(l.t, 13, false, buf, sizeof buf), 1); // <0x0A>
    assert_int_equal(buf[0], '\n');
    unload(&l);
    l = load(bpe);
    ids = tokenize(l.t, "Hi<|endoftext|>", 15, true, true, &n);
    int32_t want2[] = {17250, 50256};
    assert_true(ids_equal(ids, n, want2, 2)); // gpt-2: no BOS by default
    free(ids);
    assert_false(ll_tokenizer_add_bos(l.t));
    assert_true(ll_tokenizer_is_eog(l.t, 50256));
    unload(&l);
}

// ---- pre-tokenizers: splits checked against Python's `regex` module running the original patterns ----------
typedef struct split_case {
    const char *text;
    const char *gpt2, *llama3, *qwen2; // expected words joined by '|'
} split_case;

static const split_case k_splits[] = {
    {"Hello world", "Hello| world", "Hello| world", "Hello| world"},
    {"I'M here, you'RE not", "I|'|M| here|,| you|'|RE| not", "I|'M| here|,| you|'RE| not", "I|'M| here|,| you|'RE| not"},
    {"don't stop", "don|'t| stop", "don|'t| stop", "don|'t| stop"},
    {"1234567", "1234567", "123|456|7", "1|2|3|4|5|6|7"},
    {"a\n\nb", "a|\n|\n|b", "a|\n\n|b", "a|\n\n|b"},
    {"  hello", " | hello", " | hello", " | hello"},
    {"hello  \n  world", "hello|  \n | world", "hello|  \n| | world", "hello|  \n| | world"},
    {"$100.50", "$|100|.|50", "$|100|.|50", "$|1|0|0|.|5|0"},
    {"\tindent", "\t|indent", "\tindent", "\tindent"},
    {"x ?\r\n", "x| ?|\r\n", "x| ?\r\n", "x| ?\r\n"},
    {"word's WORD'S", "word|'s| WORD|'|S", "word|'s| WORD|'S", "word|'s| WORD|'S"},
    {"na\xc3\xafve caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "na\xc3\xafve| caf\xc3\xa9| \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
     "na\xc3\xafve| caf\xc3\xa9| \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "na\xc3\xafve| caf\xc3\xa9| \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"},
    {"x\xc2\xb2 3\xc2\xbd", "x|\xc2\xb2| 3\xc2\xbd", "x|\xc2\xb2| |3\xc2\xbd", "x|\xc2\xb2| |3|\xc2\xbd"},
    {"end  ", "end|  ", "end|  ", "end|  "},
};

// Run a splitter on text and join the words with '|'.
static void split_join(ll_pretok pre, const char *text, char *out) {
    size_t len = strlen(text), n = 0, byte_of[128];
    uint32_t cps[128], lens[128];
    for (size_t pos = 0; pos < len; n++) byte_of[n] = pos, cps[n] = ll_utf8_next((const uint8_t *)text, len, &pos);
    byte_of[n] = len;
    size_t nw = ll_pretok_split(pre, cps, n, lens), at = 0, o = 0;
    for (size_t w = 0; w < nw; w++) {
        if (w) out[o++] = '|';
        size_t b0 = byte_of[at], b1 = byte_of[at + lens[w]];
        memcpy(out + o, text + b0, b1 - b0);
        o += b1 - b0;
        at += lens[w];
    }
    out[o] = 0;
    assert_int_equal(at, n);
}

static void test_pretok(void **state) {
    (void)state;
    char got[512];
    for (size_t i = 0; i < sizeof k_splits / sizeof k_splits[0]; i++) {
        const split_case *c = &k_splits[i];
        split_join(LL_PRETOK_GPT2, c->text, got);
        assert_string_equal(got, c->gpt2);
        split_join(LL_PRETOK_LLAMA3, c->text, got);
        assert_string_equal(got, c->llama3);
        split_join(LL_PRETOK_QWEN2, c->text, got);
        assert_string_equal(got, c->qwen2);
    }
    assert_int_equal(ll_ucat_of('A'), LL_UCAT_LETTER);
    assert_int_equal(ll_ucat_of(0x4E2D), LL_UCAT_LETTER);  // 中
    assert_int_equal(ll_ucat_of(0x0663), LL_UCAT_NUMBER);  // Arabic-Indic three
    assert_int_equal(ll_ucat_of(0x3000), LL_UCAT_SPACE);   // ideographic space
    assert_int_equal(ll_ucat_of(0x0301), LL_UCAT_OTHER);   // combining acute (a mark, not a letter)
    assert_int_equal(ll_ucat_of(0x2EBF0), LL_UCAT_LETTER); // CJK Ext. I (Unicode 15.1)
    assert_int_equal(ll_ucat_of(0x110000), LL_UCAT_OTHER);
}

// ---- synthetic vocabularies ----------------------------------------------------------------------------
// The 256 byte-level symbols of GPT-2's byte map, as UTF-8 texts.
static void byte_syms(char sym[256][4], ll_str *out) {
    for (int b = 0; b < 256; b++) {
        int k = ll_utf8_put(ll_bpe_byte_to_cp((uint8_t)b), sym[b]);
        out[b] = (ll_str){sym[b], (uint64_t)k};
    }
}

// A gpt2 vocabulary: byte symbols, then extra tokens; merges as given.
static ll_gguf *bpe_vocab(const char *pre, const char *const *extra, int n_extra, const char *const *merges,
                          int n_merges) {
    static char sym[256][4];
    ll_str toks[300], mer[16];
    byte_syms(sym, toks);
    for (int i = 0; i < n_extra; i++) toks[256 + i] = (ll_str){extra[i], strlen(extra[i])};
    for (int i = 0; i < n_merges; i++) mer[i] = (ll_str){merges[i], strlen(merges[i])};
    ll_gguf *g = ll_gguf_new("synthetic-bpe");
    ll_gguf_set_str(g, "tokenizer.ggml.model", "gpt2");
    if (pre) ll_gguf_set_str(g, "tokenizer.ggml.pre", pre);
    ll_gguf_set_arr_str(g, "tokenizer.ggml.tokens", (uint64_t)(256 + n_extra), toks);
    ll_gguf_set_arr_str(g, "tokenizer.ggml.merges", (uint64_t)n_merges, mer);
    return g;
}

static void expect_ids(const ll_tokenizer *t, const char *text, const char *const *want_texts, int nw) {
    int n;
    int32_t *ids = tokenize(t, text, strlen(text), false, false, &n);
    assert_int_equal(n, nw);
    for (int i = 0; i < nw; i++) assert_int_equal(ids[i], ll_tokenizer_find(t, want_texts[i]));
    free(ids);
}

// Merge order by rank, ties leftmost; llama3's ignore_merges takes a word that is a token whole.
static void test_bpe_rules(void **state) {
    (void)state;
    ll_error err;
    ll_tokenizer *t;
    const char *extra[] = {"ab", "bc", "abc", "xyz"};
    const char *m1[] = {"b c", "a b", "a bc"}, *m2[] = {"a b", "b c", "a bc"};
    ll_gguf *g = bpe_vocab("gpt-2", extra, 4, m1, 3);
    assert_int_equal(ll_tokenizer_init(&t, g, &err), LL_OK);
    expect_ids(t, "abc", (const char *[]){"abc"}, 1);
    expect_ids(t, "xyz", (const char *[]){"x", "y", "z"}, 3);
    expect_ids(t, "ab ab", (const char *[]){"ab", "\xc4\xa0", "ab"}, 3); // no merge joins Ġ (the space) to ab
    ll_tokenizer_free(t);
    ll_gguf_free(g);
    g = bpe_vocab("gpt-2", extra, 4, m2, 3);
    assert_int_equal(ll_tokenizer_init(&t, g, &err), LL_OK);
    expect_ids(t, "abc", (const char *[]){"ab", "c"}, 2); // "a b" first now, and (ab, c) is no merge
    ll_tokenizer_free(t);
    ll_gguf_free(g);
    g = bpe_vocab("llama-bpe", extra, 4, m2, 3);
    assert_int_equal(ll_tokenizer_init(&t, g, &err), LL_OK);
    expect_ids(t, "abc", (const char *[]){"abc"}, 1); // a word that is a token is not merged
    expect_ids(t, "xyz", (const char *[]){"xyz"}, 1);
    assert_true(ll_tokenizer_add_bos(t)); // llama3 default; bos defaults to 11
    assert_int_equal(ll_tokenizer_bos(t), 11);
    ll_tokenizer_free(t);
    ll_gguf_free(g);
}

// SPM: highest score first, ties leftmost; unknown characters fall back to byte tokens, else <unk>.
static void test_spm_rules(void **state) {
    (void)state;
    const char *txt[] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81", "a", "b", "aa", "\xe2\x96\x81" "a", "<0x63>"};
    float score[] = {0, 0, 0, -1, -1, -1, -2, -3, 0};
    int32_t type[] = {2, 3, 3, 1, 1, 1, 1, 1, 6};
    ll_str toks[9];
    for (int i = 0; i < 9; i++) toks[i] = (ll_str){txt[i], strlen(txt[i])};
    ll_gguf *g = ll_gguf_new("synthetic-spm");
    ll_gguf_set_str(g, "tokenizer.ggml.model", "llama");
    ll_gguf_set_arr_str(g, "tokenizer.ggml.tokens", 9, toks);
    ll_gguf_set_arr(g, "tokenizer.ggml.scores", LL_GGUF_FLOAT32, 9, score);
    ll_gguf_set_arr(g, "tokenizer.ggml.token_type", LL_GGUF_INT32, 9, type);
    ll_gguf_set_u32(g, "tokenizer.ggml.padding_token_id", 4294967295u); // "none", as stories260K stores it
    ll_error err;
    ll_tokenizer *t;
    assert_int_equal(ll_tokenizer_init(&t, g, &err), LL_OK);
    int n;
    int32_t *ids = tokenize(t, "aaa", 3, true, false, &n);
    int32_t want[] = {1, 3, 6, 4}; // <s> ▁ aa a: "aa" (-2) beats "▁a" (-3), leftmost "aa" first
    assert_true(ids_equal(ids, n, want, 4));
    free(ids);
    ids = tokenize(t, "cd", 2, false, false, &n);
    int32_t want2[] = {3, 8, 0}; // ▁ <0x63> <unk>: 'c' has a byte token, 'd' none
    assert_true(ids_equal(ids, n, want2, 3));
    free(ids);
    char buf[8];
    assert_int_equal(ll_tokenizer_detokenize(t, (int32_t[]){1, 7, 8}, 3, false, false, buf, 8), 3);
    assert_memory_equal(buf, " ac", 3); // BOS consumes the leading-space removal, as in llama.cpp
    ll_tokenizer_free(t);
    ll_gguf_free(g);
}

// A vocabulary of 100 empty tokens: one warning line (it was one per token, burying the real error), and the
// tokens are named [EMPTY_<index>] as in llama.cpp.
static void test_empty_tokens_one_warning(void **state) {
    (void)state;
    ll_str toks[101];
    for (int i = 0; i < 100; i++) toks[i] = (ll_str){"", 0};
    toks[100] = (ll_str){"a", 1};
    ll_gguf *g = ll_gguf_new("empty-tokens");
    ll_gguf_set_str(g, "tokenizer.ggml.model", "llama");
    ll_gguf_set_arr_str(g, "tokenizer.ggml.tokens", 101, toks);
    char path[] = "/tmp/llmlab_stderr_XXXXXX";
    int fd = mkstemp(path), saved = dup(2);
    assert_true(fd >= 0 && saved >= 0);
    fflush(stderr);
    dup2(fd, 2);
    ll_error err = {0};
    ll_tokenizer *t = NULL;
    ll_status s = ll_tokenizer_init(&t, g, &err);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    FILE *f = fdopen(fd, "r");
    rewind(f);
    char line[512];
    int n_lines = 0, n_empty = 0;
    while (fgets(line, sizeof line, f)) n_lines++, n_empty += strstr(line, "100 empty tokens") != NULL;
    fclose(f);
    unlink(path);
    assert_int_equal(n_empty, 1);
    assert_true(n_lines <= 2);
    if (s == LL_OK) {
        assert_int_equal(t->tok[42].len, 10);
        assert_memory_equal(ll_tok_text(t, 42), "[EMPTY_42]", 10);
        ll_tokenizer_free(t);
    }
    ll_gguf_free(g);
}

// One malformed vocabulary: init must fail with status st and a message naming key.
static void expect_bad(ll_gguf *g, ll_status st, const char *key) {
    ll_error err = {0};
    ll_tokenizer *t = (ll_tokenizer *)&err; // must be reset to NULL
    assert_int_equal(ll_tokenizer_init(&t, g, &err), st);
    assert_null(t);
    if (!strstr(err.message, key)) fail_msg("message '%s' does not name '%s'", err.message, key);
    ll_gguf_free(g);
}

static void test_validation(void **state) {
    (void)state;
    const char *ok_m[] = {"a b"}, *extra[] = {"ab"};
    expect_bad(ll_gguf_new("x"), LL_ERR_MISSING, "tokenizer.ggml.model");
    ll_gguf *g = bpe_vocab("gpt-2", extra, 1, ok_m, 1);
    ll_gguf_set_str(g, "tokenizer.ggml.model", "bert");
    expect_bad(g, LL_ERR_UNSUPPORTED, "bert");
    g = bpe_vocab("gpt-2", extra, 1, (const char *[]){"ab"}, 1);
    expect_bad(g, LL_ERR_FORMAT, "tokenizer.ggml.merges"); // no space
    g = bpe_vocab("gpt-2", extra, 1, (const char *[]){"a zz"}, 1);
    expect_bad(g, LL_ERR_FORMAT, "tokenizer.ggml.merges"); // "zz" is not a token
    g = bpe_vocab("gpt-2", extra, 1, (const char *[]){"b c"}, 1);
    expect_bad(g, LL_ERR_FORMAT, "tokenizer.ggml.merges"); // "bc" is not a token
    g = bpe_vocab("gpt-2", (const char *[]){"ab", "ab"}, 2, ok_m, 1);
    expect_bad(g, LL_ERR_FORMAT, "duplicate");
    g = bpe_vocab("gpt-2", (const char *[]){"\xff"}, 1, ok_m, 0);
    expect_bad(g, LL_ERR_FORMAT, "UTF-8");
    g = bpe_vocab("gpt-2", extra, 1, ok_m, 1);
    float sc[10] = {0};
    ll_gguf_set_arr(g, "tokenizer.ggml.scores", LL_GGUF_FLOAT32, 10, sc);
    expect_bad(g, LL_ERR_FORMAT, "tokenizer.ggml.scores"); // 10 scores for 257 tokens
    g = bpe_vocab("gpt-2", extra, 1, ok_m, 1);
    ll_gguf_set_arr(g, "tokenizer.ggml.token_type", LL_GGUF_FLOAT32, 10, sc);
    expect_bad(g, LL_ERR_FORMAT, "tokenizer.ggml.token_type");
    g = bpe_vocab("gpt-2", extra, 1, ok_m, 1);
    ll_gguf_set_u32(g, "tokenizer.ggml.tokens", 5);
    expect_bad(g, LL_ERR_FORMAT, "tokenizer.ggml.tokens");
    g = bpe_vocab("gpt-2", extra, 1, ok_m, 1);
    ll_gguf_set_str(g, "tokenizer.ggml.bos_token_id", "one");
    expect_bad(g, LL_ERR_FORMAT, "tokenizer.ggml.bos_token_id");
    g = bpe_vocab("gpt-2", extra, 1, ok_m, 1);
    int32_t types[257];
    for (int i = 0; i < 257; i++) types[i] = 1;
    types[256] = 6; // byte type, but "ab" is not <0xXX>
    ll_gguf_set_arr(g, "tokenizer.ggml.token_type", LL_GGUF_INT32, 257, types);
    expect_bad(g, LL_ERR_FORMAT, "tokenizer.ggml.token_type");
    g = ll_gguf_new("one-token"); // SPM adds BOS by default, but id 1 is outside a 1-token vocabulary
    ll_gguf_set_str(g, "tokenizer.ggml.model", "llama");
    ll_gguf_set_arr_str(g, "tokenizer.ggml.tokens", 1, (ll_str[]){{"a", 1}});
    expect_bad(g, LL_ERR_FORMAT, "tokenizer.ggml.add_bos_token");
}

// 128000 tokens (256 symbols, 65536 pairs, 62208 triples) and 127744 merges, like Llama 3's size.
static void test_load_128k(void **state) {
    (void)state;
    enum { N_PAIR = 65536, N_TRI = 62208, N = 256 + N_PAIR + N_TRI, N_MERGE = N_PAIR + N_TRI };
    static char sym[256][4];
    ll_str *toks = malloc(sizeof *toks * N), *mer = malloc(sizeof *mer * N_MERGE);
    char *pool = malloc((size_t)N * 13 + (size_t)N_MERGE * 14), *p = pool;
    byte_syms(sym, toks);
    for (int k = 0; k < N_PAIR + N_TRI; k++) {
        int i = (k % N_PAIR) / 256, j = k % 256, r = k % 243; // triples: pair k + symbol r
        const char *left = k < N_PAIR ? sym[i] : toks[256 + k - N_PAIR].ptr, *right = k < N_PAIR ? sym[j] : sym[r];
        size_t ll = k < N_PAIR ? toks[i].len : toks[256 + k - N_PAIR].len, rl = k < N_PAIR ? toks[j].len : toks[r].len;
        mer[k] = (ll_str){p, ll + 1 + rl};
        memcpy(p, left, ll), p[ll] = ' ', memcpy(p + ll + 1, right, rl), p += ll + 1 + rl;
        toks[256 + k] = (ll_str){p, ll + rl};
        memcpy(p, left, ll), memcpy(p + ll, right, rl), p += ll + rl;
    }
    ll_gguf *g = ll_gguf_new("synthetic-128k");
    ll_gguf_set_str(g, "tokenizer.ggml.model", "gpt2");
    ll_gguf_set_str(g, "tokenizer.ggml.pre", "llama-bpe");
    ll_gguf_set_arr_str(g, "tokenizer.ggml.tokens", N, toks);
    ll_gguf_set_arr_str(g, "tokenizer.ggml.merges", N_MERGE, mer);
    ll_error err;
    ll_tokenizer *t;
    double t0 = ll_time_s();
    ll_status st = ll_tokenizer_init(&t, g, &err);
    double dt = ll_time_s() - t0;
    if (st != LL_OK) fail_msg("%s", err.message);
    printf("# note: %d-token vocabulary with %d merges loaded in %.0f ms\n", N, N_MERGE, dt * 1e3);
    assert_true(dt < 1.0);
    assert_int_equal(ll_tokenizer_n_vocab(t), N);
    expect_ids(t, "abc", (const char *[]){"ab", "c"}, 2); // (ab, c) is no merge: triple 24930 appends sym[144]
    ll_tokenizer_free(t);
    ll_gguf_free(g);
    free(toks), free(mer), free(pool);
}

// Random texts from a mix of fragments (scripts, digits, blanks, contractions, special-token texts): ids stay in
// range, and for valid UTF-8 the streaming detokenizer gives the text back (byte fallback / byte-level BPE lose
// nothing). Malformed bytes must not crash anything.
static void test_random_roundtrip(void **state) {
    (void)state;
    static const char *const frag[] = {"a", "Zq", " ", "  ", "\n", "\r\n", "\t", "'s", "'T", "1", "12345", ".", "!!",
                                       "\xc3\xa9", "\xe4\xb8\xad", "\xf0\x9f\x98\x80", "\xe2\x80\x8d", "<s>", "</s>",
                                       "<|endoftext|>", "\xc2\xa0", "\xe3\x80\x80", "e\xcc\x81", "\xc2\xbd", "x"};
    static const char *const bad[] = {"\xff", "\xe4\xb8", "\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc0\xaf"};
    const char *files[] = {"models/vocab/ggml-vocab-llama-spm.gguf", "models/vocab/ggml-vocab-gpt-2.gguf",
                           "models/stories260K.gguf"};
    uint64_t rng = 42;
    for (int f = 0; f < 3; f++) {
        TU_NEED_SHARED(path, files[f]);
        loaded l = load(path);
        int n_round = 0;
        for (int it = 0; it < 300; it++) {
            char text[512];
            size_t len = 0;
            bool valid = it % 4 != 3;
            for (int k = (int)(tu_rng_u64(&rng) % 24); k > 0; k--) {
                const char *s = valid || tu_rng_u64(&rng) % 3 ? frag[tu_rng_u64(&rng) % (sizeof frag / sizeof *frag)]
                                                               : bad[tu_rng_u64(&rng) % (sizeof bad / sizeof *bad)];
                memcpy(text + len, s, strlen(s));
                len += strlen(s);
            }
            int n;
            int32_t *ids = tokenize(l.t, text, len, it % 2, it % 3 == 0, &n);
            for (int i = 0; i < n; i++) assert_true(ids[i] >= 0 && ids[i] < ll_tokenizer_n_vocab(l.t));
            char *back = stream_detok(l.t, ids, n, f != 1);
            if (valid && it % 3 != 0) { // parse_special off: every byte is text
                if (strlen(back) != len || memcmp(back, text, len) != 0) fail_msg("%s: round trip of case %d", files[f], it);
                n_round++;
            }
            free(back), free(ids);
        }
        printf("# note: %s: %d random texts round-trip\n", files[f], n_round);
        unload(&l);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vocab_llama_spm), cmocka_unit_test(test_vocab_gpt2),
        cmocka_unit_test(test_golden_llama_spm), cmocka_unit_test(test_golden_gpt2),
        cmocka_unit_test(test_golden_stories260k), cmocka_unit_test(test_prompt_ids),
        cmocka_unit_test(test_dev_text_ids), cmocka_unit_test(test_greedy_detok),
        cmocka_unit_test(test_stream_detok), cmocka_unit_test(test_special),
        cmocka_unit_test(test_pretok), cmocka_unit_test(test_bpe_rules),
        cmocka_unit_test(test_spm_rules), cmocka_unit_test(test_validation),
        cmocka_unit_test(test_empty_tokens_one_warning),
        cmocka_unit_test(test_load_128k), cmocka_unit_test(test_random_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
