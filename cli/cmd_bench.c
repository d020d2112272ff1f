// cmd_bench.c — `llmlab bench`: `hw` parses the flags for the hardware lab (src/bench/hw.c), `model` and the
// plain full run go to the model lab (src/lab); each writes results JSON and prints a table.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/hw.h"
#include "cli.h"
#include "lab/lab.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: llmlab bench [--quick|--full] [-m MODEL ...] [--quality MODEL] [-f TEXT] [--json DIR] [--hw DIR]\n"
            "                    the lab's full run: hardware, model speed, quality sweep, report (below)\n"
            "       llmlab bench model -m FILE [...]                  prompt/generation speed (llmlab bench model --help)\n"
            "       llmlab bench hw [--quick] [--full] [--json DIR] [--only LIST] [--sizes LIST] [-t N]\n"
            "                       [--mem-spec GBPS] [--no-gpu]\n\n"
            "Measures what this machine can do and compares it with its ceilings: GEMM (engine kernels, int8,\n"
            "a system BLAS, cuBLASLt), memory bandwidth, attention, the largest single allocation, host<->GPU\n"
            "copies and GPU launch costs. Every configuration is validated before it is timed; the median of the\n"
            "repetitions and their spread are reported. Writes system_info.json and one JSON file per section\n"
            "(schema: docs/bench-hw.md) and prints a table on stdout; progress on stderr.\n\n"
            "The full run (`llmlab bench` with no subcommand, docs/report.md): 1. bench hw (quick unless --full; or\n"
            "the results already in --hw DIR), 2. the models' speed (the -m files, else a synthetic set written and\n"
            "quantized in $TMPDIR: SmolLM-135M shapes with --quick or under 8 GiB free, else Llama-3.2-1B; --quick\n"
            "also makes the tests pp128/tg32), 3. the quality sweep of the real model (--quality, else the first -m):\n"
            "quantized to --types (default Q8_0,Q4_K_M,Q4_0), perplexity and KL-divergence against it on -f TEXT\n"
            "(default $LLMLAB_SHARED/data/wiki.test.raw), --chunks N chunks (default 10), 4. REPORT.md and\n"
            "report.html. run.json records the steps. Ctrl-C stops the current step, keeps what finished, writes the\n"
            "report marked partial and exits 130; a second Ctrl-C kills at once.\n\n"
            "hw options:\n"
            "  --quick         small sizes, short timing (under a minute on 2 cores)\n"
            "  --full          adds the long sizes (CPU GEMM 4096, CPU attention 4096)\n"
            "  --json DIR      where the JSON goes (default results/raw/<hostname>)\n"
            "  --only LIST     comma-separated sections: gemm, memory, attention, alloc, transfer, launch\n"
            "  --sizes LIST    GEMM sizes (M = N = K) on CPU and GPU, e.g. 512,1024 (default CPU 1024,2048,\n"
            "                  --quick 1024; GPU 1024..8192, --quick 2048,8192)\n"
            "  -t, --threads N most CPU threads (default: the CPUs this process may use; memory sweeps 1, 2, 4 .. N)\n"
            "  --mem-spec GBPS the DRAM bandwidth spec, for %% of spec in memory.json\n"
            "  --no-gpu        skip every GPU part\n");
}

// "512,1024" -> sizes; false after printing what is wrong.
static bool parse_sizes(const char *v, int *out, int *n) {
    *n = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", v);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        long s;
        if (*n >= LL_HW_MAX_SIZES) {
            fprintf(stderr, "llmlab bench: --sizes takes at most %d sizes\n", LL_HW_MAX_SIZES);
            return false;
        }
        if (!cli_int("bench", "--sizes", tok, 16, 32768, &s)) return false;
        out[(*n)++] = (int)s;
    }
    if (*n == 0) {
        fprintf(stderr, "llmlab bench: --sizes expects a list like 512,1024\n");
        return false;
    }
    return true;
}

int cmd_bench(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    if (argc < 2 || argv[1][0] == '-') return ll_lab_bench_all_main(argc, argv); // plain `llmlab bench`
    if (!strcmp(argv[1], "model")) return ll_lab_bench_model_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "hw") != 0) {
        fprintf(stderr, "llmlab bench: unknown benchmark '%s' (available: hw, model)\n", argv[1]);
        return 1;
    }
    ll_hw_config cfg;
    ll_hw_config_init(&cfg);
    ll_error err = {0};
    const char *cmd = "bench";
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v;
        double d;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--quick")) {
            cfg.quick = true;
        } else if (!strcmp(a, "--full")) {
            cfg.full = true;
        } else if (!strcmp(a, "--json")) {
            if (!(cfg.json_dir = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--only")) {
            if (!(v = cli_value(cmd, argc, argv, &i))) return 1;
            if (!ll_hw_parse_sections(v, &cfg.sections, &err)) return cli_fail(cmd, &err);
        } else if (!strcmp(a, "--sizes")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || !parse_sizes(v, cfg.gemm_sizes, &cfg.n_gemm_sizes)) return 1;
            memcpy(cfg.gpu_gemm_sizes, cfg.gemm_sizes, sizeof cfg.gemm_sizes); // the same sizes on every device
            cfg.n_gpu_gemm_sizes = cfg.n_gemm_sizes;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || !cli_threads(cmd, a, v, &cfg.n_threads)) return 1;
        } else if (!strcmp(a, "--mem-spec")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || !cli_float(cmd, a, v, 0.1, 1e5, &d)) return 1;
            cfg.cpu_mem_spec_gbps = d;
        } else if (!strcmp(a, "--no-gpu")) {
            cfg.no_gpu = true;
        } else {
            fprintf(stderr, "llmlab bench: unknown option '%s' (see llmlab bench --help)\n", a);
            return 1;
        }
    }
    if (cfg.quick && cfg.full) {
        fprintf(stderr, "llmlab bench: --quick and --full contradict each other; choose one\n");
        return 1;
    }
    if (ll_hw_run(&cfg, stdout, &err) != LL_OK) return cli_fail(cmd, &err);
    return 0;
}
