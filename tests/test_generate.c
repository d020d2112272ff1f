// test_generate.c — the generation loop (llmlab.h: ll_gen, ll_generate) on stories260K: ll_gen_push fed by hand
// with ids whose pieces the vocabulary fixes (stop strings across tokens, a held-back prefix that diverges, a
// UTF-8 character split over byte tokens, max_tokens, EOG), then ll_generate against a plain loop of
// ll_eval/ll_sample/ll_detok and its finish reasons (stop, length, context full, interrupts, bad arguments).
#include "testutil.h"

#include "llmlab.h"

static ll_model *g_model;

static int setup(void **state) {
    (void)state;
    const char *path = tu_shared("models/stories260K.gguf");
    if (!path) return 0; // every test skips, saying why
    ll_model_params mp = ll_model_default_params();
    mp.n_threads = 1;
    ll_error err = {0};
    if (ll_model_load(path, &mp, &g_model, &err) != LL_OK) {
        printf("# %s\n", err.message);
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    ll_model_free(g_model);
    return 0;
}

#define NEED_MODEL()                                                                                           \
    if (!g_model) TU_SKIP("models/stories260K.gguf not found under LLMLAB_SHARED (default ../shared)")

// ids of text (no BOS), checked against the pieces these tests were written for.
static int tokenize(const char *text, int32_t *ids, int cap) {
    int n = ll_tokenize(g_model, text, strlen(text), false, false, ids, cap);
    assert_true(n > 0);
    return n;
}

static const char *piece(int32_t id) {
    static char buf[4][64];
    static int slot;
    char *b = buf[slot++ & 3];
    int n = ll_token_to_piece(g_model, id, true, b, 63);
    assert_true(n >= 0);
    b[n] = 0;
    return b;
}

// What a caller of ll_gen_push sees: the text handed out so far, and after how many pushes.
typedef struct seen {
    char text[1024];
    size_t len;
} seen;

static ll_finish_reason push(ll_gen *g, seen *s, int32_t id) {
    const char *t;
    size_t n;
    ll_finish_reason r = ll_gen_push(g, id, &t, &n);
    assert_int_equal(strlen(t), n);
    assert_true(s->len + n < sizeof s->text);
    memcpy(s->text + s->len, t, n + 1);
    s->len += n;
    return r;
}

static ll_gen *gen_with(int max_tokens, const char *const *stops, int n_stops) {
    ll_gen_params p = ll_gen_default_params();
    p.max_tokens = max_tokens;
    p.stops = stops;
    p.n_stops = n_stops;
    ll_error err = {0};
    ll_gen *g = ll_gen_init(g_model, &p, &err);
    if (!g) printf("# %s\n", err.message);
    assert_non_null(g);
    return g;
}

static const char *k_text = "Lily went to the park. She saw a big dog.";

// "the park" spans " the", " p", "ar", "k": nothing of it is handed out while it forms, nor after it.
static void test_push_stop_across_tokens(void **state) {
    (void)state;
    NEED_MODEL();
    int32_t ids[64];
    int n = tokenize(k_text, ids, 64);
    assert_string_equal(piece(ids[4]), " the");
    assert_string_equal(piece(ids[5]), " p");
    assert_string_equal(piece(ids[6]), "ar");
    assert_string_equal(piece(ids[7]), "k");
    const char *stops[] = {"zebra", "the park"};
    ll_gen *g = gen_with(-1, stops, 2);
    seen s = {0};
    for (int i = 0; i < 7; i++) assert_int_equal(push(g, &s, ids[i]), LL_FINISH_NONE);
    assert_string_equal(s.text, " Lily went to "); // "the par" held back
    assert_int_equal(push(g, &s, ids[7]), LL_FINISH_STOP);
    assert_string_equal(s.text, " Lily went to ");
    assert_int_equal(ll_gen_n_tokens(g), 8);
    assert_int_equal(ll_gen_finish_reason(g), LL_FINISH_STOP);
    assert_int_equal(push(g, &s, ids[8]), LL_FINISH_STOP); // after the end: same reason, no text
    const char *t;
    size_t len;
    assert_int_equal(ll_gen_finish(g, LL_FINISH_CONTEXT, &t, &len), LL_FINISH_STOP);
    assert_int_equal(len, 0);
    assert_string_equal(s.text, " Lily went to ");
    assert_int_equal(ll_gen_n_tokens(g), 8);
    // reset: the same parameters, a new sequence; a stop string inside one piece drops the rest of it
    assert_int_equal(ll_gen_reset(g, NULL), LL_OK);
    assert_int_equal(ll_gen_n_tokens(g), 0);
    memset(&s, 0, sizeof s);
    for (int i = 0; i < n && ll_gen_finish_reason(g) == LL_FINISH_NONE; i++) push(g, &s, ids[i]);
    assert_string_equal(s.text, " Lily went to ");
    ll_gen_free(g);
    const char *one[] = {"en"}; // inside " w" + "ent": "...w" handed out, "ent" dropped
    g = gen_with(-1, one, 1);
    memset(&s, 0, sizeof s);
    for (int i = 0; i < n && ll_gen_finish_reason(g) == LL_FINISH_NONE; i++) push(g, &s, ids[i]);
    assert_string_equal(s.text, " Lily w");
    assert_int_equal(ll_gen_n_tokens(g), 3);
    ll_gen_free(g);
}

// "the parade" begins like "the park": held back while it could match, then handed out in order; a tail still
// held at the end comes out of ll_gen_finish.
static void test_push_diverging_prefix(void **state) {
    (void)state;
    NEED_MODEL();
    int32_t ids[64];
    int n = tokenize(k_text, ids, 64);
    assert_string_equal(piece(ids[n - 3]), " do");
    const char *stops[] = {"the parade", " dog!"};
    ll_gen *g = gen_with(-1, stops, 2);
    seen s = {0};
    for (int i = 0; i < 7; i++) push(g, &s, ids[i]);
    assert_string_equal(s.text, " Lily went to ");
    assert_int_equal(push(g, &s, ids[7]), LL_FINISH_NONE);
    assert_string_equal(s.text, " Lily went to the park");
    for (int i = 8; i < n - 2; i++) assert_int_equal(push(g, &s, ids[i]), LL_FINISH_NONE);
    assert_string_equal(s.text, " Lily went to the park. She saw a big"); // " do" may begin " dog!"
    const char *t;
    size_t len;
    assert_int_equal(ll_gen_finish(g, LL_FINISH_CONTEXT, &t, &len), LL_FINISH_CONTEXT);
    assert_string_equal(t, " do");
    assert_int_equal(len, 3);
    assert_int_equal(ll_gen_finish_reason(g), LL_FINISH_CONTEXT);
    ll_gen_free(g);
}

// "ü" is two byte tokens (0xC3, 0xBC): nothing is handed out after the first, the whole character after the
// second; as a stop string it matches across them; a stop string that begins inside the character holds the
// whole character back, never half of it.
static void test_push_utf8_split(void **state) {
    (void)state;
    NEED_MODEL();
    int32_t ids[16];
    int n = tokenize("a ü", ids, 16);
    assert_int_equal(n, 4);
    assert_string_equal(piece(ids[2]), "\xC3");
    assert_string_equal(piece(ids[3]), "\xBC");
    ll_gen *g = gen_with(-1, NULL, 0);
    seen s = {0};
    for (int i = 0; i < 3; i++) assert_int_equal(push(g, &s, ids[i]), LL_FINISH_NONE);
    assert_string_equal(s.text, " a ");
    push(g, &s, ids[3]);
    assert_string_equal(s.text, " a ü");
    ll_gen_free(g);

    const char *stop_u[] = {"ü"};
    g = gen_with(-1, stop_u, 1);
    memset(&s, 0, sizeof s);
    for (int i = 0; i < 3; i++) assert_int_equal(push(g, &s, ids[i]), LL_FINISH_NONE);
    assert_int_equal(push(g, &s, ids[3]), LL_FINISH_STOP);
    assert_string_equal(s.text, " a ");
    ll_gen_free(g);

    const char *stop_mid[] = {"\xBC!"}; // its first byte is the tail of "ü"
    g = gen_with(-1, stop_mid, 1);
    memset(&s, 0, sizeof s);
    for (int i = 0; i < 4; i++) assert_int_equal(push(g, &s, ids[i]), LL_FINISH_NONE);
    assert_string_equal(s.text, " a "); // not " a \xC3"
    const char *t;
    size_t len;
    ll_gen_finish(g, LL_FINISH_INTERRUPTED, &t, &len);
    assert_string_equal(t, "ü");
    ll_gen_free(g);
}

// max_tokens: the last allowed token ends it (LENGTH) and brings out what was held back; 0 tokens pushed
// after that.
static void test_push_max_tokens(void **state) {
    (void)state;
    NEED_MODEL();
    int32_t ids[64];
    tokenize(k_text, ids, 64);
    const char *stops[] = {" to the zoo"};
    ll_gen *g = gen_with(4, stops, 1);
    seen s = {0};
    for (int i = 0; i < 3; i++) assert_int_equal(push(g, &s, ids[i]), LL_FINISH_NONE);
    assert_string_equal(s.text, " Lily went");
    assert_int_equal(push(g, &s, ids[3]), LL_FINISH_LENGTH);
    assert_string_equal(s.text, " Lily went to");
    assert_int_equal(push(g, &s, ids[4]), LL_FINISH_LENGTH);
    assert_string_equal(s.text, " Lily went to");
    assert_int_equal(ll_gen_n_tokens(g), 4);
    ll_gen_free(g);
}

// An end-of-generation id ends it (held text comes out, the id's own text does not); with eog_ends false it is
// one more token.
static void test_push_eog(void **state) {
    (void)state;
    NEED_MODEL();
    int32_t ids[64];
    tokenize(k_text, ids, 64);
    int32_t eos = ll_model_eos(g_model);
    assert_true(ll_model_is_eog(g_model, eos));
    const char *stops[] = {" Lily went"};
    ll_gen *g = gen_with(-1, stops, 1);
    seen s = {0};
    assert_int_equal(push(g, &s, ids[0]), LL_FINISH_NONE);
    assert_string_equal(s.text, "");
    assert_int_equal(push(g, &s, eos), LL_FINISH_EOG);
    assert_string_equal(s.text, " Lily");
    assert_int_equal(ll_gen_n_tokens(g), 2);
    ll_gen_free(g);

    ll_gen_params p = ll_gen_default_params();
    p.eog_ends = false;
    p.strip_leading_space = true;
    g = ll_gen_init(g_model, &p, NULL);
    assert_non_null(g);
    memset(&s, 0, sizeof s);
    assert_int_equal(push(g, &s, ids[0]), LL_FINISH_NONE);
    assert_int_equal(push(g, &s, eos), LL_FINISH_NONE);
    assert_int_equal(push(g, &s, ids[1]), LL_FINISH_NONE);
    assert_string_equal(s.text, "Lily w"); // leading space stripped, as after BOS
    assert_int_equal(ll_gen_n_tokens(g), 3);
    ll_gen_free(g);
}

static void test_push_bad_params(void **state) {
    (void)state;
    NEED_MODEL();
    char longstop[LL_GEN_MAX_STOP_LEN + 2];
    memset(longstop, 'x', sizeof longstop - 1);
    longstop[sizeof longstop - 1] = 0;
    const char *bad_empty[] = {"ok", ""}, *bad_long[] = {longstop}, *many[LL_GEN_MAX_STOPS + 1];
    for (int i = 0; i <= LL_GEN_MAX_STOPS; i++) many[i] = "x";
    struct { const char *const *stops; int n; const char *msg; } cases[] = {
        {bad_empty, 2, "empty"}, {bad_long, 1, "too long"}, {many, LL_GEN_MAX_STOPS + 1, "at most"}, {NULL, 1, "at most"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ll_gen_params p = ll_gen_default_params();
        p.stops = cases[i].stops;
        p.n_stops = cases[i].n;
        ll_error err = {0};
        assert_null(ll_gen_init(g_model, &p, &err));
        assert_int_equal(err.status, LL_ERR_ARG);
        assert_non_null(strstr(err.message, cases[i].msg));
    }
    longstop[LL_GEN_MAX_STOP_LEN] = 0; // exactly the bound: accepted
    ll_gen *g = gen_with(-1, bad_long, 1);
    ll_gen_free(g);
    assert_string_equal(ll_finish_reason_name(LL_FINISH_CONTEXT), "context");
    assert_string_equal(ll_finish_reason_name(LL_FINISH_INTERRUPTED), "interrupted");
}

// ---- ll_generate -----------------------------------------------------------------------------------------

typedef struct run {
    ll_context *c;
    ll_sampler *s;
    char text[16384];
    size_t len;
    int calls;
    int interrupt_after; // set the context's flag on this callback (0: never)
    int refuse_after;    // return false on this callback (0: never)
    const char *forbidden; // a stop string: no callback text may contain it
    volatile int flag;
} run;

static bool on_text(const char *text, size_t len, void *user) {
    run *r = user;
    assert_true(len > 0);
    assert_int_equal(strlen(text), len);
    assert_true(r->len + len < sizeof r->text);
    memcpy(r->text + r->len, text, len + 1);
    r->len += len;
    r->calls++;
    if (r->forbidden) assert_null(strstr(r->text, r->forbidden));
    if (r->calls == r->interrupt_after) r->flag = 1;
    return r->calls != r->refuse_after;
}

static void run_open(run *r, int n_ctx, float temp, float repeat_penalty) {
    memset(r, 0, sizeof *r);
    ll_context_params cp = ll_context_default_params();
    cp.n_ctx = n_ctx;
    cp.device = "cpu";
    ll_error err = {0};
    assert_int_equal(ll_context_init(g_model, &cp, &r->c, &err), LL_OK);
    ll_context_set_interrupt(r->c, &r->flag);
    ll_sampler_params sp = ll_sampler_default_params();
    sp.temp = temp;
    sp.repeat_penalty = repeat_penalty;
    sp.seed = 3;
    r->s = ll_sampler_init(&sp, ll_model_n_vocab(g_model));
}

static void run_close(run *r) {
    ll_sampler_free(r->s);
    ll_context_free(r->c);
}

static int prompt_ids(int32_t *ids) {
    const char *p = "Once upon a time";
    int n = ll_tokenize(g_model, p, strlen(p), true, false, ids, 32);
    assert_int_equal(n, 5);
    return n;
}

static ll_status gen(run *r, int max_tokens, const char *const *stops, int n_stops, bool eog_ends,
                     ll_gen_result *res) {
    int32_t ids[32];
    int n = prompt_ids(ids);
    ll_gen_params p = ll_gen_default_params();
    p.max_tokens = max_tokens;
    p.stops = stops;
    p.n_stops = n_stops;
    p.eog_ends = eog_ends;
    ll_error err = {0};
    ll_status s = ll_generate(r->c, r->s, ids, n, &p, on_text, r, res, &err);
    if (s != LL_OK) printf("# %s\n", err.message);
    return s;
}

// The loop cli/gen.c had: eval the prompt, then sample, accept, detokenize, eval, n tokens.
static void plain_loop(float temp, float repeat_penalty, int n_gen, char *out, size_t cap) {
    run r;
    run_open(&r, 0, temp, repeat_penalty);
    int32_t ids[32];
    int n = prompt_ids(ids);
    assert_int_equal(ll_eval(r.c, ids, n, false, NULL), LL_OK);
    for (int i = 0; i < n; i++) ll_sampler_accept(r.s, ids[i]);
    ll_detok *d = ll_detok_init(g_model);
    size_t len = 0;
    for (int i = 0; i < n_gen; i++) {
        int32_t id = ll_sample(r.c, r.s);
        ll_sampler_accept(r.s, id);
        const char *t = ll_detok_push(d, id);
        assert_true(len + strlen(t) < cap);
        memcpy(out + len, t, strlen(t) + 1);
        len += strlen(t);
        if (i + 1 < n_gen) assert_int_equal(ll_eval(r.c, &id, 1, false, NULL), LL_OK);
    }
    ll_detok_free(d);
    run_close(&r);
}

// Greedy, sampled, and greedy with a strong repetition penalty (the prompt's ids count): the same text as the
// plain loop, LENGTH after max_tokens.
static void test_generate_matches_plain_loop(void **state) {
    (void)state;
    NEED_MODEL();
    float temps[] = {0.0f, 0.9f, 0.0f}, pens[] = {1.0f, 1.3f, 3.0f};
    for (int k = 0; k < 3; k++) {
        char want[16384];
        plain_loop(temps[k], pens[k], 60, want, sizeof want);
        run r;
        run_open(&r, 0, temps[k], pens[k]);
        ll_gen_result res;
        assert_int_equal(gen(&r, 60, NULL, 0, true, &res), LL_OK);
        assert_string_equal(r.text, want);
        assert_int_equal(res.finish, LL_FINISH_LENGTH);
        assert_int_equal(res.n_gen, 60);
        assert_int_equal(res.n_prompt, 5);
        assert_int_equal(res.n_prompt_eval, 5);
        assert_true(res.prompt_s > 0 && res.gen_s > 0);
        assert_int_equal(ll_context_n_past(r.c), 5 + 59); // the last token sampled is not evaluated
        if (k == 0) assert_memory_equal(r.text, ", there was a little girl named Lily.", 37);
        run_close(&r);
    }
}

// In real generation: "girl named Lily" spans tokens; the text stops right before it. "little boy" begins like
// "little girl": held back, then handed out; the text equals the run without stops.
static void test_generate_stops(void **state) {
    (void)state;
    NEED_MODEL();
    char want[16384];
    plain_loop(0.0f, 1.0f, 40, want, sizeof want);
    const char *stops[] = {"girl named Lily"};
    run r;
    run_open(&r, 0, 0.0f, 1.0f);
    r.forbidden = "girl";
    ll_gen_result res;
    assert_int_equal(gen(&r, 40, stops, 1, true, &res), LL_OK);
    assert_int_equal(res.finish, LL_FINISH_STOP);
    assert_string_equal(r.text, ", there was a little ");
    assert_true(res.n_gen > 3 && res.n_gen < 40);
    run_close(&r);

    const char *diverge[] = {"little boy", "Lily. He"};
    run_open(&r, 0, 0.0f, 1.0f);
    assert_int_equal(gen(&r, 40, diverge, 2, true, &res), LL_OK);
    assert_int_equal(res.finish, LL_FINISH_LENGTH);
    assert_string_equal(r.text, want);
    run_close(&r);
}

// A context of 16 and a 5-token prompt: 11 tokens evaluated after it, a 12th sampled, then CONTEXT.
static void test_generate_context_full(void **state) {
    (void)state;
    NEED_MODEL();
    run r;
    run_open(&r, 16, 0.0f, 1.0f);
    ll_gen_result res;
    assert_int_equal(gen(&r, -1, NULL, 0, false, &res), LL_OK);
    assert_int_equal(res.finish, LL_FINISH_CONTEXT);
    assert_int_equal(res.n_gen, 16 - 5 + 1);
    assert_int_equal(ll_context_n_past(r.c), 16);
    char want[16384];
    plain_loop(0.0f, 1.0f, 12, want, sizeof want);
    assert_string_equal(r.text, want);
    // max_tokens reached on that same last token: LENGTH (asked for) over CONTEXT
    ll_context_reset(r.c);
    r.len = 0;
    r.text[0] = 0;
    assert_int_equal(gen(&r, 12, NULL, 0, false, &res), LL_OK);
    assert_int_equal(res.finish, LL_FINISH_LENGTH);
    // a prompt that does not fit is an error, not a finish reason
    ll_context_truncate(r.c, 14);
    ll_error err = {0};
    int32_t ids[32];
    int n = prompt_ids(ids);
    assert_int_equal(ll_generate(r.c, r.s, ids, n, NULL, on_text, &r, &res, &err), LL_ERR_ARG);
    assert_non_null(strstr(err.message, "context full"));
    run_close(&r);
}

// The interrupt flag set from the callback stops after that token; a callback returning false stops at once;
// a flag set before the prompt stops before anything is evaluated.
static void test_generate_interrupt(void **state) {
    (void)state;
    NEED_MODEL();
    run r;
    run_open(&r, 0, 0.0f, 1.0f);
    r.interrupt_after = 3;
    ll_gen_result res;
    assert_int_equal(gen(&r, 100, NULL, 0, true, &res), LL_OK);
    assert_int_equal(res.finish, LL_FINISH_INTERRUPTED);
    assert_int_equal(r.calls, 3);
    assert_true(res.n_gen >= 3 && res.n_gen < 10);
    assert_int_equal(res.n_prompt_eval, 5);
    run_close(&r);

    run_open(&r, 0, 0.0f, 1.0f);
    r.refuse_after = 2;
    assert_int_equal(gen(&r, 100, NULL, 0, true, &res), LL_OK);
    assert_int_equal(res.finish, LL_FINISH_INTERRUPTED);
    assert_int_equal(r.calls, 2);
    assert_true(res.n_gen >= 2 && res.n_gen < 10);
    run_close(&r);

    run_open(&r, 0, 0.0f, 1.0f);
    r.flag = 1;
    assert_int_equal(gen(&r, 100, NULL, 0, true, &res), LL_OK);
    assert_int_equal(res.finish, LL_FINISH_INTERRUPTED);
    assert_int_equal(res.n_prompt, 5);
    assert_int_equal(res.n_prompt_eval, 0);
    assert_int_equal(res.n_gen, 0);
    assert_int_equal(r.calls, 0);
    assert_int_equal(ll_context_n_past(r.c), 0);
    run_close(&r);
}

static void test_generate_edges(void **state) {
    (void)state;
    NEED_MODEL();
    run r;
    run_open(&r, 0, 0.0f, 1.0f);
    ll_gen_result res;
    assert_int_equal(gen(&r, 0, NULL, 0, true, &res), LL_OK); // max_tokens 0: the prompt only
    assert_int_equal(res.finish, LL_FINISH_LENGTH);
    assert_int_equal(res.n_gen, 0);
    assert_int_equal(r.calls, 0);
    assert_int_equal(ll_context_n_past(r.c), 5);
    ll_error err = {0};
    int32_t id = 1;
    assert_int_equal(ll_generate(r.c, r.s, &id, 0, NULL, on_text, &r, &res, &err), LL_ERR_ARG);
    assert_non_null(strstr(err.message, "empty prompt"));
    const char *bad[] = {""};
    ll_gen_params p = ll_gen_default_params();
    p.stops = bad;
    p.n_stops = 1;
    assert_int_equal(ll_generate(r.c, r.s, &id, 1, &p, on_text, &r, &res, &err), LL_ERR_ARG);
    assert_int_equal(ll_context_n_past(r.c), 5); // refused before evaluating anything
    run_close(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_push_stop_across_tokens), cmocka_unit_test(test_push_diverging_prefix),
        cmocka_unit_test(test_push_utf8_split),        cmocka_unit_test(test_push_max_tokens),
        cmocka_unit_test(test_push_eog),               cmocka_unit_test(test_push_bad_params),
        cmocka_unit_test(test_generate_matches_plain_loop), cmocka_unit_test(test_generate_stops),
        cmocka_unit_test(test_generate_context_full),  cmocka_unit_test(test_generate_interrupt),
        cmocka_unit_test(test_generate_edges),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
