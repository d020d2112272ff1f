// test_lab.c — the model lab: fit arithmetic on presets against byte counts computed by hand, the shape read
// from a GGUF header against the loaded model, the model.json a tiny bench run writes, and report generation
// (REPORT.md rows, report.html with inline SVG) from fixture results written here.
#include "testutil.h"

#include <sys/stat.h>
#include <unistd.h>

#include "lab/lab.h"
#include "model/model.h"
#include "model/synth.h"
#include "types/types.h"

static char g_tmp[256];

static int setup(void **state) {
    (void)state;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/test_lab.%ld", (long)getpid());
    mkdir(g_tmp, 0777);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[400];
    if (getenv("LAB_KEEP")) return 0;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    return system(cmd) == 0 ? 0 : 0;
}

static void write_file(const char *dir, const char *name, const char *text) {
    char p[512];
    mkdir(dir, 0777);
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

// Mistral-7B by hand: d 4096, 32 layers, kv dim 8 x 128 = 1024, ffn 14336, vocab 32000, untied.
// Matrices per layer: q, o 4096^2 = 33554432 (x2); k, v 1024 x 4096 = 4194304 (x2); gate, up, down
// 14336 x 4096 = 58720256 (x3): 218103808; x 32 = 6979321856; + token_embd and output 2 x 131072000:
// 7241465856 matrix params. Norms: 32 x 8192 + 4096 = 266240 (F32).
static void test_fit_mistral(void **state) {
    (void)state;
    ll_lab_shape s;
    ll_lab_shape_from_preset(ll_preset_find("mistral-7b"), &s);
    assert_int_equal(s.n_matrix, 7241465856ull);
    assert_int_equal(s.n_params - s.n_matrix, 266240);
    // F16: 2 bytes per matrix param + 4 per norm param
    assert_int_equal(ll_lab_weight_bytes(&s, 16), 14482931712ull + 1064960ull);
    // Q8_0: 34 bytes per 32 = 8.5 bits: 7241465856 x 8.5 / 8 = 7694057472
    assert_int_equal(ll_lab_weight_bytes(&s, 8.5), 7694057472ull + 1064960ull);
    // KV at 4096, F16 (the default): 2 x 32 x 4096 x 1024 x 2 = 512 MiB; F32 1 GiB; Q8_0 34 bytes per 32 values;
    // 4 sequences: 4 times that
    assert_int_equal(ll_lab_kv_bytes(&s, 4096), 536870912ull);
    s.kv_type = LL_TYPE_F32;
    assert_int_equal(ll_lab_kv_bytes(&s, 4096), 1073741824ull);
    s.kv_type = LL_TYPE_Q8_0;
    assert_int_equal(ll_lab_kv_bytes(&s, 4096), 2ull * 32 * 4096 * 1024 / 32 * 34);
    s.kv_type = LL_TYPE_F16, s.n_seq = 4;
    assert_int_equal(ll_lab_kv_bytes(&s, 4096), 4 * 536870912ull);
    s.n_seq = 1, s.kv_type = LL_TYPE_F32; // the arithmetic below: an F32 cache
    // activations, batch 512: (3 x 4096 + 4096 + 2 x 14336) x 4 x 512 + 32000 x 4 + 512 x 4
    assert_int_equal(ll_lab_act_bytes(&s, 512), 92274688ull + 128000 + 2048);
    ll_lab_ceil c = {.read_gbps = 32.0, .gemm_gflops = 100.0, .mem_avail = 8000000000ull};
    ll_lab_fit f;
    ll_lab_fit_compute(&s, 16, 4096, 512, "cpu", &c, &f);
    assert_int_equal(f.total, 14483996672ull + 1073741824ull + 92404736ull + 67108864ull);
    assert_false(f.fits);
    assert_true(f.margin < 0);
    // decode reads everything but token_embd (32000 x 4096 x 2 bytes)
    assert_int_equal(f.weight_read, 14483996672ull - 262144000ull);
    assert_true(fabs(f.pred_tg - 32e9 / (14483996672.0 - 262144000.0)) < 1e-9);
    // prompt flops: 2 x (7241465856 - 131072000) + 4 x 32 x 32 x 128 x 256
    assert_true(fabs(f.flops_tok - (2.0 * 7110393856.0 + 4.0 * 32 * 32 * 128 * 256)) < 1);
    // Best type in 8e9 bytes at 4096: Q8_0 needs 7695122432 + 1073741824 + ... > 8e9; Q6_K (6.5625 bits):
    // 7241465856 x 6.5625 / 8 = 5940264960, + 1064960 + 1073741824 + 92404736 + 67108864 = 7174585344: fits.
    const ll_lab_qtype *q = ll_lab_fit_best(&s, 4096, 512, "cpu", &c);
    assert_non_null(q);
    assert_string_equal(q->name, "Q6_K");
    ll_lab_fit_compute(&s, q->bpw, 4096, 512, "cpu", &c, &f);
    assert_int_equal(f.total, 7174585344ull);
    assert_true(f.fits);
    assert_true(fabs(f.margin - (8000000000.0 - 7174585344.0)) < 1);
    // Largest context at Q6_K: (8e9 - fixed) / (2 x 32 x 1024 x 4 = 262144 bytes per token)
    uint64_t fixed = 5940264960ull + 1064960ull + 92404736ull + 67108864ull;
    assert_int_equal(ll_lab_fit_max_ctx(&s, q->bpw, 512, "cpu", &c, 1 << 20), (int)((8000000000ull - fixed) / 262144));
    assert_int_equal(ll_lab_fit_max_ctx(&s, q->bpw, 512, "cpu", &c, 4096), 4096); // capped
}

// Tied embeddings (llama-3.2-1b): decode reads the embedding as the output matrix, so every weight counts.
static void test_fit_tied(void **state) {
    (void)state;
    ll_lab_shape s;
    ll_lab_shape_from_preset(ll_preset_find("llama-3.2-1b"), &s);
    assert_true(s.tied);
    s.kv_type = LL_TYPE_F32;
    ll_lab_fit f;
    ll_lab_fit_compute(&s, 16, 1024, 256, "cpu", NULL, &f);
    assert_int_equal(f.weight_read, f.weights);
    // KV: 2 x 16 layers x 1024 x (8 x 64) x 4
    assert_int_equal(f.kv, 2ull * 16 * 1024 * 512 * 4);
    assert_false(f.fits); // memory unknown: never claims a fit
    assert_null(ll_lab_qtype_find("Q3_K"));
    assert_non_null(ll_lab_qtype_find("q4_k_m"));
}

// The decode matrices of a preset, grouped by type and shape; retyped for a quantized type; the calibration's
// per-token arithmetic; and a real (small) calibration that returns finite, positive timings.
static void test_fit_mats(void **state) {
    (void)state;
    ll_lab_shape s;
    ll_lab_shape_from_preset(ll_preset_find("mistral-7b"), &s);
    // q and o are both 4096 x 4096 (one group of 64); k, v 1024 x 4096 (64); gate, up (64); down (32); output.
    assert_int_equal(s.n_mats, 5);
    uint64_t params = 0;
    for (int i = 0; i < s.n_mats; i++) params += (uint64_t)s.mats[i].n_in * (uint64_t)s.mats[i].n_out * (uint64_t)s.mats[i].count;
    assert_int_equal(params, s.n_matrix - s.n_embd_table); // every matrix but the (untied) embedding table
    assert_int_equal(s.mats[0].type, LL_TYPE_F16);
    assert_int_equal(s.mats[0].count, 64);
    ll_lab_mat m[LL_LAB_MAX_MATS];
    int n = ll_lab_mats_retype(&s, ll_lab_qtype_find("Q4_K_M"), m);
    assert_int_equal(n, 5);
    for (int i = 0; i < n; i++) assert_int_equal(m[i].type, LL_TYPE_Q4_K);
    ll_lab_calib c = {.n = 2, .s_per_call = {1e-3, 2e-3}};
    ll_lab_mat two[2] = {{LL_TYPE_F32, 64, 64, 3}, {LL_TYPE_F32, 64, 128, 2}};
    assert_true(fabs(ll_lab_calib_token_s(two, 2, &c) - 7e-3) < 1e-12); // 3 x 1 ms + 2 x 2 ms
    ll_lab_fit f = {0};
    ll_lab_fit_engine(&f, two, 2, &c);
    assert_true(fabs(f.pred_tg_engine - 1 / 7e-3) < 1e-9);
    assert_true(isnan(ll_lab_calib_token_s(two, 2, NULL)));
    ll_error err = {0};
    assert_int_equal(ll_lab_calib_decode(two, 2, 1, &c, &err), LL_OK);
    assert_int_equal(c.n, 2);
    for (int i = 0; i < 2; i++) assert_true(c.s_per_call[i] > 0 && isfinite(c.s_per_call[i]) && c.gbps[i] > 0);
    assert_non_null(strstr(c.src, "ll_matmul"));
}

// The shape read from a header agrees with the loaded model.
static void test_shape_from_gguf(void **state) {
    (void)state;
    TU_NEED_SHARED(path, "models/stories260K.gguf");
    ll_lab_shape s;
    ll_error err = {0};
    assert_int_equal(ll_lab_shape_from_gguf(path, &s, &err), LL_OK);
    ll_model *m;
    assert_int_equal(ll_model_load(path, NULL, &m, &err), LL_OK);
    assert_int_equal(s.n_params, m->n_params);
    assert_int_equal(s.n_layer, m->hp.n_layer);
    assert_int_equal(s.n_head_kv, m->hp.n_head_kv);
    assert_int_equal(s.head_dim, m->hp.head_dim);
    ll_lab_fit f;
    ll_lab_fit_compute(&s, 0, 64, 16, "cpu", NULL, &f);
    assert_int_equal(f.weight_read, m->weight_bytes);
    // its decode matrices: every 2-D blk.* weight and the output, one count each
    uint64_t nm = 0;
    for (int i = 0; i < s.n_mats; i++) nm += (uint64_t)s.mats[i].count;
    assert_int_equal(nm, 7ull * (uint64_t)s.n_layer + 1);
    ll_model_free(m);
    assert_int_not_equal(ll_lab_shape_from_gguf("/nonexistent.gguf", &s, &err), LL_OK);
}

static const char *k_memory_json =
    "{\"schema\":\"llmlab.memory/1\",\"machine\":{\"hostname\":\"fixture\",\"cpu_model\":\"Fixture CPU\",\"logical_cores\":2,"
    "\"mem_total_bytes\":25769803776,\"timestamp_utc\":\"2026-11-23T00:00:00Z\"},\"results\":["
    "{\"device\":\"cpu\",\"kind\":\"read\",\"dtype\":\"fp32\",\"impl\":\"avx512\",\"threads\":1,\"array_bytes\":536870912,\"gbps\":25.0},"
    "{\"device\":\"cpu\",\"kind\":\"read\",\"dtype\":\"fp32\",\"impl\":\"avx512\",\"threads\":2,\"array_bytes\":536870912,\"gbps\":32.0},"
    "{\"device\":\"cpu\",\"kind\":\"write\",\"dtype\":\"fp32\",\"impl\":\"avx512\",\"threads\":2,\"array_bytes\":536870912,\"gbps\":20.0}],\"notes\":[]}";
static const char *k_gemm_json =
    "{\"schema\":\"llmlab.gemm/1\",\"results\":["
    "{\"device\":\"cpu\",\"kind\":\"gemm\",\"dtype\":\"fp32\",\"impl\":\"engine ll_matmul F32 weights (avx512)\",\"m\":1024,\"n\":1024,\"k\":1024,\"tflops\":0.08},"
    "{\"device\":\"cpu\",\"kind\":\"gemm\",\"dtype\":\"fp32\",\"impl\":\"engine ll_matmul F32 weights (avx512)\",\"m\":2048,\"n\":2048,\"k\":2048,\"tflops\":0.1},"
    "{\"device\":\"cpu\",\"kind\":\"gemm\",\"dtype\":\"bf16\",\"impl\":\"engine ll_matmul BF16 weights (avx512)\",\"m\":1024,\"n\":1024,\"k\":1024,\"tflops\":0.2}],\"notes\":[]}";

// A tiny random-weight model on disk (builtin vocabulary: no shared files needed), benched briefly.
static void test_bench_model_json(void **state) {
    (void)state;
    char model[400], hw[400], out[400];
    snprintf(model, sizeof model, "%s/tiny.gguf", g_tmp);
    snprintf(hw, sizeof hw, "%s/hw", g_tmp);
    snprintf(out, sizeof out, "%s/out", g_tmp);
    write_file(hw, "memory.json", k_memory_json);
    write_file(hw, "gemm.json", k_gemm_json);
    ll_synth_params sp = ll_synth_default_params();
    sp.preset = "tiny", sp.vocab_path = "builtin", sp.type = LL_TYPE_F32;
    ll_error err = {0};
    assert_int_equal(ll_synth_write(model, &sp, &err), LL_OK);
    ll_lab_bench_cfg cfg;
    ll_lab_bench_cfg_init(&cfg);
    cfg.models[cfg.n_models++] = model;
    cfg.pp[0] = 8, cfg.tg[0] = 4, cfg.reps = 2, cfg.threads[0] = 1;
    cfg.json_dir = out, cfg.ceil_dir = hw;
    cJSON *doc;
    assert_int_equal(ll_lab_bench_run(&cfg, &doc, &err), LL_OK);
    char p[512];
    snprintf(p, sizeof p, "%s/model.json", out);
    cJSON *f = ll_lab_json_read(p);
    assert_non_null(f);
    assert_true(cJSON_Compare(f, doc, true));
    assert_string_equal(ll_lab_str(f, "schema"), "llmlab.model/1");
    const cJSON *ce = cJSON_GetObjectItem(cJSON_GetObjectItem(f, "ceilings"), "cpu");
    assert_true(ll_lab_num(ce, "read_gbps") == 32.0); // the best read row
    assert_true(fabs(ll_lab_num(ce, "gemm_gflops") - 100.0) < 1e-9); // the best fp32 row
    assert_non_null(strstr(ll_lab_str(ce, "read_source"), "memory.json"));
    const cJSON *m = cJSON_GetArrayItem(cJSON_GetObjectItem(f, "results"), 0);
    assert_non_null(m);
    assert_string_equal(ll_lab_str(m, "type"), "F32");
    assert_string_equal(ll_lab_str(m, "backend"), "cpu");
    assert_true(ll_lab_num(m, "params") > 0 && ll_lab_num(m, "size_bytes") > 0 && ll_lab_num(m, "weight_bytes") > 0);
    const cJSON *mem = cJSON_GetObjectItem(m, "memory"), *ld = cJSON_GetObjectItem(m, "load");
    // tiny: 2 layers, 2 kv heads x 16, n_ctx = max(8, 4): 2 x 2 x 8 x 32 values of F16 (the default cache)
    assert_true(ll_lab_num(mem, "kv_bytes") == 2.0 * 2 * 8 * 32 * 2);
    assert_string_equal(ll_lab_str(mem, "kv_type"), "F16");
    assert_true(ll_lab_num(mem, "peak_rss_bytes") > 0);
    assert_true(ll_lab_num(ld, "warm_s") > 0);
    assert_true(ll_lab_num(ld, "cold_s") > 0 || *ll_lab_str(ld, "cold_note")); // measured, or why not
    const cJSON *tests = cJSON_GetObjectItem(m, "tests");
    assert_int_equal(cJSON_GetArraySize(tests), 2);
    const cJSON *pp = cJSON_GetArrayItem(tests, 0), *tg = cJSON_GetArrayItem(tests, 1);
    assert_string_equal(ll_lab_str(pp, "test"), "pp8");
    assert_string_equal(ll_lab_str(tg, "test"), "tg4");
    const cJSON *ts = cJSON_GetObjectItem(tg, "ts");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(ts, "samples")), 2);
    double med = ll_lab_num(ts, "median");
    assert_true(med > 0 && ll_lab_num(ts, "min") <= med && med <= ll_lab_num(ts, "max"));
    // generation roofline: weight bytes x t/s over the 32 GB/s ceiling
    double want = ll_lab_num(m, "weight_bytes") * med / 1e9 / 32.0 * 100;
    assert_true(fabs(ll_lab_num(cJSON_GetObjectItem(tg, "roofline"), "pct_of_ceiling") - want) < 1e-6 * want);
    assert_string_equal(ll_lab_str(cJSON_GetObjectItem(pp, "roofline"), "bound"), "compute");
    // fit's prediction beside the measurement
    const cJSON *fj = cJSON_GetObjectItem(m, "fit");
    assert_true(ll_lab_num(fj, "pred_tg_engine") > 0 && ll_lab_num(fj, "pred_tg_bound") > 0);
    assert_non_null(strstr(ll_lab_str(fj, "engine_source"), "calibration"));
    assert_null(cJSON_GetObjectItem(f, "partial"));
    // the printers
    char *buf = NULL;
    size_t len = 0;
    FILE *mf = open_memstream(&buf, &len);
    ll_lab_bench_print(mf, doc, "md");
    ll_lab_bench_print(mf, doc, "csv");
    ll_lab_bench_print(mf, doc, "jsonl");
    fclose(mf);
    assert_non_null(strstr(buf, "| model | size | params | backend | threads | test | t/s |"));
    assert_non_null(strstr(buf, "model,type,size_bytes"));
    assert_non_null(strstr(buf, "\"test\":\"tg4\""));
    free(buf);
    cJSON_Delete(f);
    cJSON_Delete(doc);
    // Ctrl-C before anything ran: LL_ERR_INTERRUPTED, and the (empty) partial document is still written.
    volatile int stop = 1;
    cfg.interrupt = &stop;
    assert_int_equal(ll_lab_bench_run(&cfg, &doc, &err), LL_ERR_INTERRUPTED);
    assert_non_null(doc);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(doc, "partial")));
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "results")), 0);
    cJSON_Delete(doc);
    f = ll_lab_json_read(p);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(f, "partial")));
    cJSON_Delete(f);
    cfg.interrupt = NULL;
    cfg.n_models = 0;
    assert_int_equal(ll_lab_bench_run(&cfg, &doc, &err), LL_ERR_ARG);
}

// The quality step on a tiny random model: quantized to Q8_0 and compared with itself on a short text.
static void test_quality(void **state) {
    (void)state;
    char model[400], text[400], out[400], p[512];
    snprintf(model, sizeof model, "%s/qtiny.gguf", g_tmp);
    snprintf(out, sizeof out, "%s/qres", g_tmp);
    ll_synth_params sp = ll_synth_default_params();
    sp.preset = "tiny", sp.vocab_path = "builtin", sp.type = LL_TYPE_F32;
    ll_error err = {0};
    assert_int_equal(ll_synth_write(model, &sp, &err), LL_OK);
    char words[2048] = "";
    for (int i = 0; i < 60; i++) strcat(words, i % 3 ? "the cat sat " : "on a mat, ");
    write_file(g_tmp, "text.txt", words);
    snprintf(text, sizeof text, "%s/text.txt", g_tmp);
    ll_lab_quality_cfg q;
    ll_lab_quality_cfg_init(&q);
    q.model = model, q.text = text, q.types = "Q8_0", q.n_ctx = 32, q.max_chunks = 2, q.n_threads = 1, q.json_dir = out;
    assert_int_equal(ll_lab_quality_run(&q, &err), LL_OK);
    snprintf(p, sizeof p, "%s/quality.json", out);
    cJSON *j = ll_lab_json_read(p);
    assert_non_null(j);
    assert_string_equal(ll_lab_str(j, "schema"), "llmlab.quality/1");
    assert_true(ll_lab_num(j, "n_ctx") == 32);
    const cJSON *sw = cJSON_GetObjectItem(j, "sweep"), *b = cJSON_GetArrayItem(sw, 0), *r = cJSON_GetArrayItem(sw, 1);
    assert_int_equal(cJSON_GetArraySize(sw), 2);
    assert_string_equal(ll_lab_str(b, "type"), "base");
    assert_string_equal(ll_lab_str(r, "type"), "Q8_0");
    const cJSON *res = cJSON_GetObjectItem(r, "result"), *vb = cJSON_GetObjectItem(res, "vs_base");
    assert_true(ll_lab_num(res, "ppl") > 1 && ll_lab_num(vb, "kld_mean") >= 0 && ll_lab_num(vb, "top1_pct") > 50);
    // the base's PPL is the one the Q8_0 pass computed for it
    assert_true(ll_lab_num(cJSON_GetObjectItem(b, "result"), "ppl") == ll_lab_num(vb, "base_ppl"));
    assert_true(ll_lab_num(r, "bits_per_weight") > 8 && ll_lab_num(r, "bits_per_weight") < 32);
    cJSON_Delete(j);
    // Interrupted before the first type: a partial document, LL_ERR_INTERRUPTED.
    volatile int stop = 1;
    q.interrupt = &stop;
    assert_int_equal(ll_lab_quality_run(&q, &err), LL_ERR_INTERRUPTED);
    j = ll_lab_json_read(p);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "partial")));
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "sweep")), 1);
    cJSON_Delete(j);
    // A text too short for two chunks says so.
    write_file(g_tmp, "short.txt", "hi");
    snprintf(text, sizeof text, "%s/short.txt", g_tmp);
    q.interrupt = NULL, q.text = text;
    assert_int_equal(ll_lab_quality_run(&q, &err), LL_ERR_ARG);
    assert_non_null(strstr(err.message, "tokens"));
}

// A model.json fixture: two types of one model; t/s doubled (scale 1) or not (scale 0.5) for comparisons.
static void model_fixture(const char *dir, double scale) {
    char t[4096];
    snprintf(t, sizeof t,
             "{\"schema\":\"llmlab.model/1\",\"machine\":{\"hostname\":\"fixture\",\"cpu_model\":\"Fixture CPU\","
             "\"logical_cores\":2,\"mem_total_bytes\":25769803776},"
             "\"ceilings\":{\"cpu\":{\"read_gbps\":32,\"read_source\":\"memory.json\",\"gemm_gflops\":100,\"gemm_source\":\"gemm.json\"}},"
             "\"results\":["
             "{\"model\":\"fixture-7b\",\"type\":\"Q4_0\",\"backend\":\"cpu\",\"description\":\"fixture\",\"params\":7e9,"
             "\"size_bytes\":4294967296,\"weight_bytes\":4000000000,"
             "\"memory\":{\"weights_bytes\":4294967296,\"kv_bytes\":536870912,\"kv_n_ctx\":640,\"kv_type\":\"F32\",\"activations_bytes\":1048576,\"peak_rss_bytes\":5000000000},"
             "\"load\":{\"cold_s\":1.5,\"warm_s\":0.25,\"definition\":\"d\"},"
             "\"tests\":[{\"test\":\"pp512\",\"n_prompt\":512,\"n_gen\":0,\"n_depth\":0,\"threads\":2,\"ts\":{\"median\":%g,\"mean\":%g,\"sd\":1},"
             "\"roofline\":{\"bound\":\"compute\",\"arithmetic_intensity\":256,\"achieved_gflops\":10,\"pct_of_ceiling\":10}},"
             "{\"test\":\"tg128\",\"n_prompt\":0,\"n_gen\":128,\"n_depth\":0,\"threads\":2,\"ts\":{\"median\":%g,\"mean\":%g,\"sd\":0.5},"
             "\"roofline\":{\"bound\":\"memory\",\"arithmetic_intensity\":3.5,\"achieved_gflops\":2,\"achieved_gbps\":20,\"pct_of_ceiling\":62.5}}]},"
             "{\"model\":\"fixture-7b\",\"type\":\"F16\",\"backend\":\"cpu\",\"description\":\"fixture\",\"params\":7e9,"
             "\"size_bytes\":14000000000,\"weight_bytes\":13000000000,"
             "\"memory\":{\"weights_bytes\":14000000000,\"kv_bytes\":536870912,\"kv_n_ctx\":640,\"kv_type\":\"F32\",\"activations_bytes\":1048576,\"peak_rss_bytes\":15000000000},"
             "\"load\":{\"cold_s\":null,\"cold_note\":\"posix_fadvise(DONTNEED) left 100%% of the pages cached\",\"warm_s\":0.5,\"definition\":\"d\"},"
             "\"tests\":[{\"test\":\"pp512\",\"n_prompt\":512,\"n_gen\":0,\"n_depth\":0,\"threads\":2,\"ts\":{\"median\":50,\"mean\":50,\"sd\":1},"
             "\"roofline\":{\"bound\":\"compute\",\"arithmetic_intensity\":80,\"achieved_gflops\":5,\"pct_of_ceiling\":5}},"
             "{\"test\":\"tg128\",\"n_prompt\":0,\"n_gen\":128,\"n_depth\":0,\"threads\":2,\"ts\":{\"median\":1.7,\"mean\":1.7,\"sd\":0.1},"
             "\"roofline\":{\"bound\":\"memory\",\"arithmetic_intensity\":1,\"achieved_gflops\":1,\"achieved_gbps\":22,\"pct_of_ceiling\":70}}]}],"
             "\"notes\":[]}",
             100 * scale, 100 * scale, 20 * scale, 20 * scale);
    write_file(dir, "model.json", t);
}

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

static void test_report(void **state) {
    (void)state;
    char a[400], b[400], out[400], p[512];
    snprintf(a, sizeof a, "%s/runA", g_tmp);
    snprintf(b, sizeof b, "%s/runB", g_tmp);
    snprintf(out, sizeof out, "%s/rep", g_tmp);
    write_file(a, "memory.json", k_memory_json);
    write_file(a, "gemm.json", k_gemm_json);
    model_fixture(a, 1.0);
    ll_error err = {0};
    assert_int_equal(ll_lab_report(a, NULL, out, &err), LL_OK);
    snprintf(p, sizeof p, "%s/REPORT.md", out);
    char *md = tu_read_file(p, NULL);
    assert_non_null(md);
    assert_non_null(strstr(md, "| llmlab cpu (2 threads) | fixture-7b | Q4_0 | 4.50 GiB | 100.0 pp512 | 20.0 tg128 | 10.0% | 62.5% |"));
    assert_non_null(strstr(md, "| llmlab cpu (2 threads) | fixture-7b | F16 | 13.54 GiB | 50.0 pp512 | 1.7 tg128 | 5.0% | 70.0% |"));
    assert_non_null(strstr(md, "| cpu | 32.0 | memory.json: cpu read, 2 threads (avx512) | 100.0 |")); // ceilings from the hw files
    assert_non_null(strstr(md, "| Fastest generation | fixture-7b Q4_0: 20.00 t/s |"));
    assert_non_null(strstr(md, "| cpu | read | 2 | 512.0 MiB | 32.0 |"));          // the memory table
    assert_non_null(strstr(md, "Not measured: no attention.json"));              // missing sections are stated
    assert_non_null(strstr(md, "Not measured: no quality.json"));
    assert_non_null(strstr(md, "not measured (posix_fadvise"));                  // cold load said why
    assert_null(strstr(md, "Comparison"));
    snprintf(p, sizeof p, "%s/report.html", out);
    char *html = tu_read_file(p, NULL);
    assert_non_null(html);
    assert_true(count(html, "<svg") >= 5); // roofline, t/s, memory, GEMM sweep, bandwidth sweep
    assert_int_equal(count(html, "<svg"), count(html, "</svg>"));
    assert_null(strstr(html, "<script"));
    assert_null(strstr(html, "http://") && !strstr(html, "xmlns='http://www.w3.org/2000/svg'") ? "network" : NULL);
    assert_non_null(strstr(html, "Roofline"));
    free(md);
    free(html);
    // Side by side: run B is half as fast.
    model_fixture(b, 0.5);
    assert_int_equal(ll_lab_report(a, b, out, &err), LL_OK);
    snprintf(p, sizeof p, "%s/REPORT.md", out);
    md = tu_read_file(p, NULL);
    assert_non_null(strstr(md, "## Comparison"));
    assert_non_null(strstr(md, "| fixture-7b | Q4_0 | tg128 | 20.0 | 10.0 | 2.00 |"));
    free(md);
    // A partial run with a quality sweep and fit's predictions: the banner, the sweep table, the fit table.
    write_file(a, "run.json", "{\"schema\":\"llmlab.run/1\",\"started_utc\":\"2026-11-23T00:00:00Z\",\"status\":\"interrupted\","
               "\"steps\":[{\"step\":\"hardware\",\"status\":\"done\"},{\"step\":\"model speed\",\"status\":\"interrupted\"}]}");
    write_file(a, "quality.json", "{\"schema\":\"llmlab.quality/1\",\"base\":\"real.gguf\",\"text\":\"wiki.txt\",\"n_ctx\":512,"
               "\"max_chunks\":10,\"n_tokens\":100000,\"sweep\":[{\"type\":\"base\",\"file_bytes\":2097152,"
               "\"result\":{\"ppl\":10.5,\"ppl_stderr\":0.25}},{\"type\":\"Q4_0\",\"file_bytes\":1048576,\"bits_per_weight\":4.5,"
               "\"result\":{\"ppl\":11,\"ppl_stderr\":0.3,\"vs_base\":{\"dppl\":0.5,\"kld_mean\":0.05,\"kld_stderr\":0.001,"
               "\"kld_p99\":0.5,\"top1_pct\":90}}}]}");
    char t[8192];
    snprintf(p, sizeof p, "%s/model.json", a);
    char *mj = tu_read_file(p, NULL);
    char *cut = strstr(mj, "\"tests\"");
    assert_non_null(cut);
    snprintf(t, sizeof t, "%.*s\"fit\":{\"pred_tg_engine\":22,\"pred_tg_bound\":30,\"engine_source\":\"calibration\"},%s",
             (int)(cut - mj), mj, cut);
    free(mj);
    write_file(a, "model.json", t);
    assert_int_equal(ll_lab_report(a, NULL, out, &err), LL_OK);
    snprintf(p, sizeof p, "%s/REPORT.md", out);
    md = tu_read_file(p, NULL);
    assert_non_null(strstr(md, "PARTIAL REPORT: the `llmlab bench` run started 2026-11-23T00:00:00Z was interrupted (Ctrl-C) "
                               "(hardware: done; model speed: interrupted)"));
    assert_non_null(strstr(md, "| Q4_0 | 1.0 MiB | 4.50 | 11.0000 ± 0.3000 | +0.5000 | 0.050000 ± 0.001000 | 0.50000 | 90.0% |"));
    assert_non_null(strstr(md, "| base | 2.0 MiB | — | 10.5000 ± 0.2500 |"));
    assert_non_null(strstr(md, "## Generation: predicted (llmlab fit) vs measured"));
    assert_non_null(strstr(md, "| fixture-7b | Q4_0 | 2 | 20.0 tg128 | 22.0 | +10.0% | 30.0 | 66.7% |"));
    snprintf(p, sizeof p, "%s/report.html", out);
    html = tu_read_file(p, NULL);
    assert_non_null(strstr(html, "Quality vs size"));
    assert_non_null(strstr(html, "class='partial'"));
    free(html);
    free(md);
    // An empty folder is an error that says what to run.
    snprintf(p, sizeof p, "%s/empty", g_tmp);
    mkdir(p, 0777);
    assert_int_equal(ll_lab_report(p, NULL, out, &err), LL_ERR_MISSING);
    assert_non_null(strstr(err.message, "bench hw"));
}

// Strings from results JSON are data in REPORT.md too: raw HTML shown as text, a '|' escaped inside its cell
// (the row keeps its column count), a newline not ending the row.
static void test_report_escaping(void **state) {
    (void)state;
    char a[400], out[400], p[512];
    snprintf(a, sizeof a, "%s/runEsc", g_tmp);
    snprintf(out, sizeof out, "%s/repEsc", g_tmp);
    model_fixture(a, 1.0);
    snprintf(p, sizeof p, "%s/model.json", a);
    char *mj = tu_read_file(p, NULL);
    assert_non_null(mj);
    char t[8192], *at = strstr(mj, "\"model\":\"fixture-7b\"");
    assert_non_null(at);
    snprintf(t, sizeof t, "%.*s\"model\":\"<script>alert(1)</script>|x\\ny&z\"%s", (int)(at - mj), mj,
             at + strlen("\"model\":\"fixture-7b\""));
    free(mj);
    write_file(a, "model.json", t);
    ll_error err = {0};
    assert_int_equal(ll_lab_report(a, NULL, out, &err), LL_OK);
    snprintf(p, sizeof p, "%s/REPORT.md", out);
    char *md = tu_read_file(p, NULL);
    assert_non_null(md);
    assert_null(strstr(md, "<script"));
    const char *row = strstr(md, "| llmlab cpu (2 threads) | &lt;script&gt;alert(1)&lt;/script&gt;\\|x y&amp;z | Q4_0 |");
    if (!row) fail_msg("escaped row not found in:\n%s", md);
    snprintf(p, sizeof p, "%s/report.html", out);
    char *html = tu_read_file(p, NULL);
    assert_non_null(html);
    assert_null(strstr(html, "<script"));
    free(md);
    free(html);
}

// REPORT.md and report.html are replaced together or not at all: when the second cannot be written (here its
// temporary path is taken by a directory), the first keeps its old text and no temporary file stays.
static void test_write_texts_all_or_none(void **state) {
    (void)state;
    char d[400], p[600];
    snprintf(d, sizeof d, "%s/pair", g_tmp);
    write_file(d, "A.md", "old A");
    write_file(d, "B.html", "old B");
    snprintf(p, sizeof p, "%s/.B.html.tmp.%ld", d, (long)getpid());
    assert_int_equal(mkdir(p, 0777), 0);
    const char *names[2] = {"A.md", "B.html"}, *texts[2] = {"new A", "new B"};
    ll_error err = {0};
    assert_int_equal(ll_lab_write_texts(d, 2, names, texts, &err), LL_ERR_IO);
    assert_non_null(strstr(err.message, "B.html"));
    snprintf(p, sizeof p, "%s/A.md", d);
    char *s = tu_read_file(p, NULL);
    assert_string_equal(s, "old A");
    free(s);
    snprintf(p, sizeof p, "%s/.A.md.tmp.%ld", d, (long)getpid());
    assert_int_equal(access(p, F_OK), -1);
    snprintf(p, sizeof p, "%s/.B.html.tmp.%ld", d, (long)getpid());
    rmdir(p);
    assert_int_equal(ll_lab_write_texts(d, 2, names, texts, &err), LL_OK);
    snprintf(p, sizeof p, "%s/B.html", d);
    s = tu_read_file(p, NULL);
    assert_string_equal(s, "new B");
    free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fit_mistral),
        cmocka_unit_test(test_fit_tied),
        cmocka_unit_test(test_fit_mats),
        cmocka_unit_test(test_shape_from_gguf),
        cmocka_unit_test(test_bench_model_json),
        cmocka_unit_test(test_quality),
        cmocka_unit_test(test_report),
        cmocka_unit_test(test_report_escaping),
        cmocka_unit_test(test_write_texts_all_or_none),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
