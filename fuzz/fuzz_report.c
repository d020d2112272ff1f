// fuzz_report.c — libFuzzer target for `llmlab report` (`make fuzz`): results JSON -> REPORT.md + report.html.
// The input is the results folder: NUL-separated parts written, in order, as system_info.json, gemm.json,
// memory.json, model.json, quality.json, run.json, attention.json, alloc.json, transfer.json and launch.json
// (an empty part: no such file); a part that starts with "other:" goes to a second folder instead, and the report
// compares the two. Every input gives a report or an error with a message; with a report both files exist and
// the HTML is closed. Files live in a temporary folder made once (removed at exit).
#include "lab/lab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const k_names[] = {"system_info", "gemm", "memory", "model", "quality",
                                      "run", "attention", "alloc", "transfer", "launch"};
enum { N_NAMES = sizeof k_names / sizeof k_names[0] };
static char g_root[256], g_dir[2][300];

static void clean_dir(const char *dir) {
    char p[512];
    for (int i = 0; i < N_NAMES; i++) snprintf(p, sizeof p, "%s/%s.json", dir, k_names[i]), unlink(p);
    snprintf(p, sizeof p, "%s/REPORT.md", dir), unlink(p);
    snprintf(p, sizeof p, "%s/report.html", dir), unlink(p);
}

static void at_exit(void) {
    for (int k = 0; k < 2; k++) clean_dir(g_dir[k]), rmdir(g_dir[k]);
    rmdir(g_root);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *tmp = getenv("TMPDIR");
    snprintf(g_root, sizeof g_root, "%s/llmlab-fuzz-report-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_root)) { perror("fuzz_report: mkdtemp"); exit(1); }
    for (int k = 0; k < 2; k++) {
        snprintf(g_dir[k], sizeof g_dir[k], "%s/%s", g_root, k ? "other" : "dir");
        if (mkdir(g_dir[k], 0700)) { perror("fuzz_report: mkdir"); exit(1); }
    }
    atexit(at_exit);
    return 0;
}

static void put_file(const char *dir, const char *name, const char *s, size_t n) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s.json", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) abort();
    if (n && fwrite(s, 1, n, f) != n) abort();
    fclose(f);
}

static size_t file_tail(const char *dir, const char *name, char *tail, size_t cap) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "rb");
    if (!f) return 0;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    size_t k = (size_t)n < cap - 1 ? (size_t)n : cap - 1;
    fseek(f, n - (long)k, SEEK_SET);
    k = fread(tail, 1, k, f);
    tail[k] = 0;
    fclose(f);
    return (size_t)n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    for (int k = 0; k < 2; k++) clean_dir(g_dir[k]);
    const char *s = (const char *)data, *end = s + size;
    int next[2] = {0, 0};
    bool other = false;
    while (s < end) {
        const char *z = memchr(s, 0, (size_t)(end - s));
        size_t n = (size_t)((z ? z : end) - s);
        int k = n >= 6 && !memcmp(s, "other:", 6);
        if (k) s += 6, n -= 6, other = true;
        if (next[k] < N_NAMES) {
            if (n) put_file(g_dir[k], k_names[next[k]], s, n);
            next[k]++;
        }
        s += n + 1;
    }
    ll_error err;
    err.message[0] = 0;
    ll_status st = ll_lab_report(g_dir[0], other ? g_dir[1] : NULL, NULL, &err);
    if (st != LL_OK) {
        if (!err.message[0]) abort();
        return 0;
    }
    char tail[64];
    if (!file_tail(g_dir[0], "REPORT.md", tail, sizeof tail)) abort();
    if (!file_tail(g_dir[0], "report.html", tail, sizeof tail) || !strstr(tail, "</html>")) abort();
    return 0;
}
