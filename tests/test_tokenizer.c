// test_tokenizer.c — tokenizer against llama.cpp: its vocab test vectors (.inp/.out), the golden JSONs, prompt
// ids and the dev-text id hash; detokenization (full and streaming); pre-tokenizer splits checked by hand
// against Python's regex module; malformed vocabularies; load time of a 128k-token BPE vocabulary.
#include "testutil.h"

#include <cjson/cJSON.h>

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
    size_t len;
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
    size_t len;
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
    const char *text = "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"; // é € 😀: all byte fallback in this 512 vocab
    int n;
    int32_t *ids = tokenize(l.t, text, strlen(text), false, false, &n);
    assert_int_equal(n, 1 + 2 + 3 + 4); // "▁" then one <0xXX> per byte
    ll_detok *d = ll_detok_init_tok(l.t);
    ll_detok_set_strip_leading_space(d, true);
    const char *want[10] = {"", "", "\xc3\xa9", "", "", "\xe2\x82\xac", "", "", "", "\xf0\x9f\x98\x80"};
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
