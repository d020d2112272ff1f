// cmd_report.c — `llmlab report`: REPORT.md and report.html from the results JSON of a folder (and another
// folder to compare with). Never measures anything.
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "lab/lab.h"

static void usage(FILE *f) {
    fprintf(f, "usage: llmlab report [RESULTS_DIR] [--compare OTHER_DIR] [-o OUTDIR]\n\n"
               "Writes REPORT.md and a self-contained report.html (inline SVG: roofline, t/s by type, memory, GEMM and\n"
               "bandwidth sweeps) from the JSON results of `llmlab bench hw`, `llmlab bench model` and quality runs\n"
               "in RESULTS_DIR (default results/raw/<hostname>). Sections without results are stated as missing.\n\n"
               "  --compare DIR  a second results folder, side by side\n"
               "  -o OUTDIR      where the report goes (default RESULTS_DIR)\n");
}

int cmd_report(int argc, char **argv) {
    const char *cmd = "report", *dir = NULL, *other = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--compare")) { if (!(other = cli_value(cmd, argc, argv, &i))) return 1; }
        else if (!strcmp(a, "-o")) { if (!(out = cli_value(cmd, argc, argv, &i))) return 1; }
        else if (a[0] == '-') { fprintf(stderr, "llmlab report: unknown option '%s'\n", a); return 1; }
        else if (!dir) dir = a;
        else { fprintf(stderr, "llmlab report: one results folder (use --compare for a second)\n"); return 1; }
    }
    char def[512];
    ll_lab_default_dir(def, sizeof def);
    if (!dir) dir = def;
    ll_error err = {0};
    if (ll_lab_report(dir, other, out ? out : dir, &err) != LL_OK) return cli_fail(cmd, &err);
    fprintf(stderr, "report: wrote %s/REPORT.md and %s/report.html\n", out ? out : dir, out ? out : dir);
    return 0;
}
