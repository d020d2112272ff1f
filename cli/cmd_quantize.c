// cmd_quantize.c — `llmlab quantize IN OUT TYPE`: argument parsing and the summary around ll_quantize_file
// (src/quant/quantize.c), with Ctrl-C leaving no output file.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "quant/quantize.h"

#define MAX_OVERRIDES 64

static volatile int g_quant_stop;
// The first Ctrl-C stops at the next row batch (the writer removes its temporary file); a second one exits at
// once, removing it here.
static void on_sigint(int sig) {
    (void)sig;
    if (g_quant_stop) {
        ll_tmp_remove_all();
        _exit(130);
    }
    g_quant_stop = 1;
}

static void usage(FILE *f) {
    fprintf(f, "usage: llmlab quantize IN.gguf OUT.gguf TYPE [N_THREADS] [options]\n\n"
               "Writes OUT with llama-quantize's per-tensor type mix for TYPE (no imatrix): the same tensor types and\n"
               "bytes llama.cpp writes. E.g. Q4_K_M keeps output.weight and, in the first and last eighth of the layers\n"
               "and every third layer between, attn_v and ffn_down at Q6_K. Norms and 1-D tensors stay as they are;\n"
               "a tensor whose row length does not fit the type's blocks falls back (Q4_K->Q5_0, Q5_K->Q5_1,\n"
               "Q6_K->Q8_0, else F16), with a warning.\n\n"
               "TYPE: %s\n"
               "IN:   a GGUF with F32/F16/BF16 weights, or a llama2.c checkpoint (+ tokenizer.bin)\n\n"
               "  -t, --threads N           threads (default: physical cores this process may use)\n"
               "  --allow-requantize        accept already-quantized input tensors (loses quality)\n"
               "  --tensor-type PAT=TYPE    force TYPE for tensors whose name matches the regex PAT (first match\n"
               "                            wins), e.g. --tensor-type ffn_down=f16; repeatable\n"
               "  --tokenizer TOK.bin       llama2.c input: its tokenizer (default: tokenizer.bin beside IN)\n"
               "  -v, --verbose             one line per tensor\n\n"
               "OUT is written to OUT.tmp.PID and renamed when complete: an interrupted or failed run leaves no OUT.\n",
            ll_ftype_list());
}

// "PATTERN=TYPE" (split at the last '=').
static bool parse_override(const char *arg, ll_quant_override *o) {
    const char *eq = strrchr(arg, '=');
    if (!eq || eq == arg || !eq[1]) {
        fprintf(stderr, "llmlab quantize: --tensor-type expects PATTERN=TYPE, got '%s'\n", arg);
        return false;
    }
    ll_type t;
    if (!ll_type_from_name(eq + 1, &t)) {
        fprintf(stderr, "llmlab quantize: --tensor-type %s: unknown type '%s'\n", arg, eq + 1);
        return false;
    }
    o->pattern = ll_strndup(arg, (size_t)(eq - arg));
    o->type = t;
    return true;
}

static int report(const char *out, const ll_quantize_params *p, const ll_quantize_stats *st) {
    char in_s[32], out_s[32];
    ll_fmt_bytes(in_s, sizeof in_s, (double)st->bytes_in);
    ll_fmt_bytes(out_s, sizeof out_s, (double)st->bytes_out);
    double bpw = st->n_elements ? 8.0 * (double)st->bytes_out / (double)st->n_elements : 0;
    fprintf(stderr, "llmlab quantize: wrote %s: %s, %llu tensors (%llu converted, %llu fallbacks), %s -> %s "
                    "(%.2f bits/weight), %.2f s\n", out, ll_ftype_name(p->ftype), (unsigned long long)st->n_tensors,
            (unsigned long long)st->n_quantized, (unsigned long long)st->n_fallback, in_s, out_s, bpw, st->seconds);
    return 0;
}

// Positionals: IN OUT TYPE [N_THREADS] (llama-quantize's order).
static int parse_positional(const char *a, const char *pos[3], ll_quantize_params *p) {
    int n = pos[0] ? pos[1] ? pos[2] ? 3 : 2 : 1 : 0;
    if (n < 3) {
        pos[n] = a;
        return 0;
    }
    if (p->n_threads) {
        fprintf(stderr, "llmlab quantize: unexpected argument '%s'\n", a);
        return 1;
    }
    if (!cli_threads("quantize", "N_THREADS", a, &p->n_threads)) return 1;
    return 0;
}

static int parse_flag(int argc, char **argv, int *i, ll_quantize_params *p, ll_quant_override *ov) {
    const char *a = argv[*i], *v;
    if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
        if (!(v = cli_value("quantize", argc, argv, i)) || !cli_threads("quantize", a, v, &p->n_threads)) return 1;
    } else if (!strcmp(a, "--allow-requantize")) {
        p->allow_requantize = true;
    } else if (!strcmp(a, "--tensor-type")) {
        if (!(v = cli_value("quantize", argc, argv, i))) return 1;
        if (p->n_overrides == MAX_OVERRIDES) {
            fprintf(stderr, "llmlab quantize: at most %d --tensor-type options\n", MAX_OVERRIDES);
            return 1;
        }
        if (!parse_override(v, &ov[p->n_overrides])) return 1;
        p->n_overrides++;
    } else if (!strcmp(a, "--tokenizer")) {
        if (!(p->tokenizer_path = cli_value("quantize", argc, argv, i))) return 1;
    } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
        p->verbose = true;
    } else {
        fprintf(stderr, "llmlab quantize: unknown option '%s' (see llmlab quantize --help)\n", a);
        return 1;
    }
    return 0;
}

int cmd_quantize(int argc, char **argv) {
    ll_quantize_params p = ll_quantize_default_params();
    ll_quant_override ov[MAX_OVERRIDES];
    const char *pos[3] = {NULL, NULL, NULL};
    int rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            goto done;
        }
        rc = a[0] == '-' && a[1] ? parse_flag(argc, argv, &i, &p, ov) : parse_positional(a, pos, &p);
    }
    if (rc) goto done;
    if (!pos[2]) {
        usage(stderr);
        rc = 1;
        goto done;
    }
    if (!ll_ftype_from_name(pos[2], &p.ftype)) {
        fprintf(stderr, "llmlab quantize: unknown type '%s' (one of: %s)\n", pos[2], ll_ftype_list());
        rc = 1;
        goto done;
    }
    p.overrides = ov;
    p.progress = !p.verbose;
    p.interrupt = &g_quant_stop;
    struct sigaction sa = {0}, old;
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old);
    ll_quantize_stats st;
    ll_error err;
    ll_status s = ll_quantize_file(pos[0], pos[1], &p, &st, &err);
    if (s != LL_OK) rc = cli_fail("quantize", &err) + (s == LL_ERR_INTERRUPTED ? 129 : 0); // Ctrl-C: 130
    else rc = report(pos[1], &p, &st);
    sigaction(SIGINT, &old, NULL);
done:
    for (int i = 0; i < p.n_overrides; i++) free((char *)ov[i].pattern);
    return rc;
}
