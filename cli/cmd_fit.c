// cmd_fit.c — `llmlab fit`: will a model fit on this machine, at which type and context, and how fast will it
// run: memory arithmetic from the GGUF header or a preset, speed from the measured ceilings.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "lab/lab.h"
#include "types/types.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: llmlab fit (MODEL.gguf | --arch NAME) [--type T] [--ctx N] [--batch B] [--device cpu|cuda]\n"
            "                  [--cache-type f16|f32|q8_0] [--parallel N] [--hw DIR] [--mem BYTES] [-t N] [--no-calib]\n\n"
            "Whether a model fits in this device's memory: weights + KV cache (2 x layers x ctx x sequences x kv heads\n"
            "x head_dim values of the cache type: F16 by default) + activations + overhead, against the memory\n"
            "available; the margin, the largest\n"
            "context that fits, the best type that fits (F16, Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q4_0), and the prompt and\n"
            "generation t/s the measured ceilings allow (generation = read bandwidth / bytes per token; prompt =\n"
            "GEMM peak / FLOPs per token). Reads only the GGUF header. Ceilings: `llmlab bench hw` results in --hw DIR\n"
            "(default results/raw/<hostname>), else a quick measurement (CPU).\n"
            "On CPU it also predicts what the engine will reach: a calibration (about a second per weight type) times\n"
            "one-token ll_matmul calls on synthetic weights of the model's own matrix shapes and types, streamed from\n"
            "memory; generation t/s = 1 / (sum of those times per token).\n\n"
            "  --arch NAME   a preset instead of a file (llama2-7b, mistral-7b, llama3-8b, llama-3.2-1b, qwen2.5-0.5b,\n"
            "                smollm-135m, llama3-70b, tiny)\n"
            "  --type T      weight type for a preset or to re-type a file (default: the file's own; presets: F16)\n"
            "  --ctx N       context (default 4096, capped at the training context)\n"
            "  --batch B     prompt batch (default 512)\n"
            "  --device D    cpu (default) or cuda\n"
            "  --cache-type T  the KV cache's type: f16 (default), f32 or q8_0\n"
            "  --parallel N  sequences held at once, each with --ctx positions (default 1)\n"
            "  --mem BYTES   memory to fit into, instead of what the device has free now\n"
            "  -t N          threads of the calibration (default: physical cores this process may use)\n"
            "  --no-calib    skip the calibration (only the ceiling bounds)\n");
}

static void line(const char *what, uint64_t b) {
    char s[32];
    ll_fmt_bytes(s, sizeof s, (double)b);
    printf("  %-22s %12s  (%llu bytes)\n", what, s, (unsigned long long)b);
}

int cmd_fit(int argc, char **argv) {
    const char *cmd = "fit", *file = NULL, *arch = NULL, *type = NULL, *device = "cpu", *hw = NULL, *v;
    long ctx = 0, batch = 512, parallel = 1;
    int threads = 0;
    ll_cache_type kv = LL_CACHE_F16;
    bool calib = true;
    uint64_t mem = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--arch")) { if (!(arch = cli_value(cmd, argc, argv, &i))) return 1; }
        else if (!strcmp(a, "--type")) { if (!(type = cli_value(cmd, argc, argv, &i))) return 1; }
        else if (!strcmp(a, "--device")) { if (!(device = cli_value(cmd, argc, argv, &i))) return 1; }
        else if (!strcmp(a, "--hw")) { if (!(hw = cli_value(cmd, argc, argv, &i))) return 1; }
        else if (!strcmp(a, "--ctx") || !strcmp(a, "-c")) { if (!(v = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, v, 1, 1 << 24, &ctx)) return 1; }
        else if (!strcmp(a, "--batch") || !strcmp(a, "-b")) { if (!(v = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, v, 1, 1 << 20, &batch)) return 1; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { if (!(v = cli_value(cmd, argc, argv, &i)) || !cli_threads(cmd, a, v, &threads)) return 1; }
        else if (!strcmp(a, "--no-calib")) calib = false;
        else if (!strcmp(a, "--parallel") || !strcmp(a, "-np")) { if (!(v = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, v, 1, 4096, &parallel)) return 1; }
        else if (!strcmp(a, "--cache-type") || !strcmp(a, "-ctk")) {
            if (!(v = cli_value(cmd, argc, argv, &i))) return 1;
            if (!ll_cache_type_parse(v, &kv)) { fprintf(stderr, "llmlab fit: %s expects f16, f32 or q8_0, got '%s'\n", a, v); return 1; }
        }
        else if (!strcmp(a, "--mem")) { if (!(v = cli_value(cmd, argc, argv, &i)) || !cli_u64(cmd, a, v, &mem)) return 1; }
        else if (a[0] == '-') { fprintf(stderr, "llmlab fit: unknown option '%s'\n", a); return 1; }
        else if (!file) file = a;
        else { fprintf(stderr, "llmlab fit: one model at a time ('%s' and '%s')\n", file, a); return 1; }
    }
    if (!file == !arch) { fprintf(stderr, "llmlab fit: give a MODEL.gguf or --arch NAME (one of them)\n"); return 1; }
    if (strcmp(device, "cpu") && strcmp(device, "cuda")) { fprintf(stderr, "llmlab fit: --device expects cpu or cuda\n"); return 1; }
    ll_lab_shape s;
    ll_error err = {0};
    if (arch) {
        const ll_preset *p = ll_preset_find(arch);
        if (!p) { fprintf(stderr, "llmlab fit: unknown --arch '%s' (see llmlab fit --help)\n", arch); return 1; }
        ll_lab_shape_from_preset(p, &s);
    } else if (ll_lab_shape_from_gguf(file, &s, &err) != LL_OK) return cli_fail(cmd, &err);
    s.kv_type = kv == LL_CACHE_F32 ? LL_TYPE_F32 : kv == LL_CACHE_Q8_0 ? LL_TYPE_Q8_0 : LL_TYPE_F16;
    s.n_seq = (int)parallel;
    const ll_lab_qtype *qt = NULL;
    if (type && !(qt = ll_lab_qtype_find(type))) {
        fprintf(stderr, "llmlab fit: --type expects F16, Q8_0, Q6_K, Q5_K_M, Q4_K_M or Q4_0, got '%s'\n", type);
        return 1;
    }
    if (!qt && arch) qt = ll_lab_qtype_find("F16");
    double bpw = qt ? qt->bpw : 0;
    int cap = s.n_ctx_train > 0 ? s.n_ctx_train : 1 << 20;
    int n_ctx = ctx ? (int)ctx : (cap < 4096 ? cap : 4096);
    char dir[512];
    ll_lab_default_dir(dir, sizeof dir);
    ll_lab_ceil c;
    ll_lab_ceil_get(hw ? hw : dir, device, 0, &c);
    if (mem) c.mem_avail = mem, snprintf(c.mem_src, sizeof c.mem_src, "--mem");
    ll_lab_fit f;
    ll_lab_fit_compute(&s, bpw, n_ctx, (int)batch, device, &c, &f);
    ll_lab_mat mats[LL_LAB_MAX_MATS];
    int n_mats = ll_lab_mats_retype(&s, qt, mats);
    ll_lab_calib cal = {0};
    bool have_cal = false;
    if (calib && !strcmp(device, "cpu")) {
        fprintf(stderr, "fit: calibrating the engine's decode matmuls (%d shapes and types) ...\n", n_mats);
        if (ll_lab_calib_decode(mats, n_mats, threads, &cal, &err) != LL_OK) return cli_fail(cmd, &err);
        ll_lab_fit_engine(&f, mats, n_mats, &cal);
        have_cal = f.pred_tg_engine > 0;
    }
    printf("%s (%s): %.3g B params, %d layers, dim %d, %d/%d heads x %d, ffn %d, vocab %d, trained context %d\n", s.name,
           s.arch, s.n_params / 1e9, s.n_layer, s.n_embd, s.n_head, s.n_head_kv, s.head_dim, s.n_ff, s.n_vocab, s.n_ctx_train);
    printf("at %s, context %d, batch %ld on %s:\n", qt ? qt->name : s.file_type, n_ctx, batch, device);
    line("weights", f.weights);
    char kvl[64];
    snprintf(kvl, sizeof kvl, parallel > 1 ? "KV cache (%s, %ld seq)" : "KV cache (%s)", ll_cache_type_name(kv), parallel);
    line(kvl, f.kv);
    line("activations", f.activations);
    line("overhead", f.overhead);
    line("total", f.total);
    char av[32], mg[32];
    ll_fmt_bytes(av, sizeof av, (double)f.available);
    ll_fmt_bytes(mg, sizeof mg, f.margin < 0 ? -f.margin : f.margin);
    if (!f.available) printf("available memory unknown (%s): cannot say whether it fits\n", c.mem_src);
    else printf("%s: %s available (%s); %s %s\n", f.fits ? "FITS" : "DOES NOT FIT", av, c.mem_src,
                f.fits ? "margin" : "short by", mg);
    int mx = ll_lab_fit_max_ctx(&s, bpw, (int)batch, device, &c, cap);
    if (f.available) printf("largest context that fits at this type: %d%s\n", mx, mx == cap ? " (the trained context)" : "");
    const ll_lab_qtype *bq = ll_lab_fit_best(&s, n_ctx, (int)batch, device, &c);
    const char *best = bq ? bq->name : NULL;
    if (f.available) printf("best type that fits at context %d: %s\n", n_ctx, best ? best : "none (even Q4_0 is too big)");
    printf("predicted generation: ");
    if (have_cal) printf("%.1f t/s engine (%.2f ms of matrix work per token, calibrated below)\n                      ",
                         f.pred_tg_engine, f.tg_matrix_s * 1e3);
    if (f.pred_tg > 0) printf("%.1f t/s bound (%.1f GB/s / %.1f MB per token)\n", f.pred_tg, c.read_gbps, f.weight_read / 1e6);
    else printf("unknown bound (no bandwidth ceiling)\n");
    printf("predicted prompt:     ");
    if (f.pred_pp > 0) printf("%.1f t/s (%.1f GFLOPS / %.3g GFLOP per token)\n", f.pred_pp, c.gemm_gflops, f.flops_tok / 1e9);
    else printf("unknown (no GEMM ceiling)\n");
    printf("ceilings: bandwidth from %s\n          GEMM from %s\n", c.read_src, c.gemm_src);
    if (have_cal) {
        printf("engine: %s\n", cal.src);
        for (int i = 0; i < n_mats; i++)
            printf("  %-6s %6d x %-6d x%-4d %8.1f us per call  %6.1f GB/s\n", ll_type_name(mats[i].type), mats[i].n_out,
                   mats[i].n_in, mats[i].count, cal.s_per_call[i] * 1e6, cal.gbps[i]);
        printf("(the engine prediction counts the matrices only: norms, RoPE, attention and sampling add a little;\n"
               " the bounds assume the whole bandwidth / GEMM peak; `llmlab bench model` measures it)\n");
    } else printf("(predictions are upper bounds: the engine reaches a fraction of them; `llmlab bench model` measures it)\n");
    return 0;
}
