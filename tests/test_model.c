// test_model.c — the forward pass against independent references: llama.cpp's golden logits and greedy texts
// (../shared/golden), and a float64 reference forward written here on random small models of every shape
// variant (GQA/MQA, NeoX RoPE, partial rotary, qwen2 biases, tied embeddings, rope_freqs, F32/F16/BF16).
#include "testutil.h"

#include "golden.h"

#include <cjson/cJSON.h>

#include "core/half.h"
#include "model/model.h"

// Tolerances from ../shared/golden/README.md section 7.
static const golden_tol k_f32 = {1e-5, 1e-4, 0};
static const golden_tol k_f16 = {2e-3, 3e-3, 0};

static void test_golden_stories260k_gguf(void **state) {
    TU_NEED_SHARED(model, "golden/stories260K/stories260K.gguf");
    check_golden(model, NULL, tu_shared("golden/stories260K/stories260K.ids.txt"),
                 tu_shared("golden/stories260K/stories260K-F32.logits.f32"), tu_shared("golden/stories260K/prompt.txt"),
                 k_f32);
}

static void test_golden_stories260k_llama2c(void **state) {
    TU_NEED_SHARED(model, "golden/stories260K/stories260K.bin");
    check_golden(model, tu_shared("golden/stories260K/tok512.bin"), tu_shared("golden/stories260K/stories260K.ids.txt"),
                 tu_shared("golden/stories260K/stories260K-F32.logits.f32"), tu_shared("golden/stories260K/prompt.txt"),
                 k_f32);
}

static void test_golden_tiny_llama_f16(void **state) {
    TU_NEED_SHARED(model, "golden/tiny-llama/tiny-llama-f16.gguf");
    check_golden(model, NULL, tu_shared("golden/tiny-llama/tiny-llama.ids.txt"),
                 tu_shared("golden/tiny-llama/tiny-llama-F16.logits.f32"), tu_shared("golden/tiny-llama/prompt.txt"), k_f16);
}

static void test_golden_tiny_qwen2_f16(void **state) {
    TU_NEED_SHARED(model, "golden/tiny-qwen2/tiny-qwen2-f16.gguf");
    check_golden(model, NULL, tu_shared("golden/tiny-qwen2/tiny-qwen2.ids.txt"),
                 tu_shared("golden/tiny-qwen2/tiny-qwen2-F16.logits.f32"), tu_shared("golden/tiny-qwen2/prompt.txt"), k_f16);
}

// Greedy 200 tokens, decoded one at a time through the KV cache: ids and text identical to llama.cpp's.
static void check_greedy(const char *json_rel) {
    TU_NEED_SHARED(model, "golden/stories260K/stories260K.gguf");
    char *js = tu_read_file(tu_shared(json_rel), NULL);
    cJSON *root = cJSON_Parse(js);
    assert_non_null(root);
    const char *prompt = cJSON_GetObjectItem(root, "prompt")->valuestring;
    cJSON *pids = cJSON_GetObjectItem(root, "prompt_ids"), *gids = cJSON_GetObjectItem(root, "generated_ids");
    const char *text = cJSON_GetObjectItem(root, "detok_generated")->valuestring;
    ll_error err = {0};
    ll_model_params mp = ll_model_default_params();
    mp.n_threads = 2;
    ll_model *m;
    if (ll_model_load(model, &mp, &m, &err) != LL_OK) fail_msg("%s", err.message);
    int32_t ids[512];
    int n = ll_tokenize(m, prompt, strlen(prompt), true, false, ids, 512);
    assert_int_equal(n, cJSON_GetArraySize(pids));
    for (int i = 0; i < n; i++) assert_int_equal(ids[i], cJSON_GetArrayItem(pids, i)->valueint);
    ll_context *c;
    ll_context_params cp = ll_context_default_params();
    cp.n_ctx = 512;
    cp.cache_type = LL_CACHE_F32; // the goldens: llama.cpp with an F32 KV cache (../shared/golden/README.md)
    if (ll_context_init(m, &cp, &c, &err) != LL_OK) fail_msg("%s", err.message);
    assert_int_equal(ll_eval(c, ids, n, false, &err), LL_OK);
    ll_sampler_params sp = ll_sampler_default_params();
    sp.temp = 0;
    ll_sampler *s = ll_sampler_init(&sp, ll_model_n_vocab(m));
    ll_detok *dt = ll_detok_init(m);
    char out[8192] = "";
    int ng = cJSON_GetArraySize(gids);
    for (int i = 0; i < ng; i++) {
        int32_t id = ll_sampler_sample(s, ll_logits(c, -1));
        assert_int_equal(id, cJSON_GetArrayItem(gids, i)->valueint);
        strncat(out, ll_detok_push(dt, id), sizeof out - strlen(out) - 1);
        assert_int_equal(ll_eval(c, &id, 1, false, &err), LL_OK);
    }
    strncat(out, ll_detok_flush(dt), sizeof out - strlen(out) - 1);
    // llama_detokenize drops the leading space of the first piece (SPM).
    assert_string_equal(out[0] == ' ' ? out + 1 : out, text);
    ll_detok_free(dt);
    ll_sampler_free(s);
    ll_context_free(c);
    ll_model_free(m);
    cJSON_Delete(root);
    free(js);
}

static void test_greedy_bos(void **state) { check_greedy("golden/stories260K/greedy200-bos.json"); }
static void test_greedy_once(void **state) { check_greedy("golden/stories260K/greedy200-once-upon-a-time.json"); }

#include "ref_forward.h"

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_stories260k_gguf),
        cmocka_unit_test(test_golden_stories260k_llama2c),
        cmocka_unit_test(test_golden_tiny_llama_f16),
        cmocka_unit_test(test_golden_tiny_qwen2_f16),
        cmocka_unit_test(test_greedy_bos),
        cmocka_unit_test(test_greedy_once),
        cmocka_unit_test(test_ref_llama_f32_gqa),
        cmocka_unit_test(test_ref_llama_f16_mqa_partial_rope),
        cmocka_unit_test(test_ref_qwen2_bf16_bias_tied),
        cmocka_unit_test(test_ref_llama_rope_freqs_mha),
        cmocka_unit_test(test_ref_context_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
