// hw_util.c — the hardware lab's shared machinery: repetition timing and its statistics, progress lines,
// and the results JSON (documents, rows with spec and % of spec, atomic writes).
#include "bench/hw_internal.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// ---- timing ---------------------------------------------------------------------------------------------------

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// The p-quantile of sorted t[0, n), interpolating between neighbours.
static double quantile(const double *t, int n, double p) {
    double x = p * (n - 1);
    int i = (int)x;
    return i + 1 < n ? t[i] + (x - i) * (t[i + 1] - t[i]) : t[n - 1];
}

ll_hw_stats ll_hw_stats_of(double *t, int n) {
    ll_hw_stats s = {.reps = n};
    if (n <= 0) return s;
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    s.median = quantile(t, n, 0.5);
    s.q1 = quantile(t, n, 0.25);
    s.q3 = quantile(t, n, 0.75);
    s.min = t[0];
    s.max = t[n - 1];
    return s;
}

#define HW_TIME_MAX 1000

ll_hw_stats ll_hw_time(ll_hw_fn fn, void *arg, int warmup, int min_reps, int max_reps, double min_time) {
    static _Thread_local double t[HW_TIME_MAX];
    if (max_reps > HW_TIME_MAX) max_reps = HW_TIME_MAX;
    if (min_reps > max_reps) min_reps = max_reps;
    for (int i = 0; i < warmup; i++) fn(arg);
    int n = 0;
    double total = 0;
    while (n < max_reps && (n < min_reps || total < min_time)) {
        double t0 = ll_time_s();
        fn(arg);
        t[n] = ll_time_s() - t0;
        total += t[n++];
    }
    return ll_hw_stats_of(t, n);
}

double ll_hw_spread_pct(const ll_hw_stats *t) {
    return t->reps > 0 && t->median > 0 ? 100.0 * (t->q3 - t->q1) / t->median : 0;
}

double ll_hw_rate(const ll_hw_meas *m, double scale) {
    return m->t.reps > 0 && m->t.median > 0 ? m->work / m->t.median * scale : 0;
}

void ll_hw_progress(const ll_hw_ctx *c, const char *fmt, ...) {
    if (!c->cfg.progress) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench hw: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

// ---- JSON -------------------------------------------------------------------------------------------------------

cJSON *ll_hw_doc_new(const ll_hw_ctx *c, const char *name) {
    cJSON *d = cJSON_CreateObject();
    char schema[64];
    snprintf(schema, sizeof schema, "llmlab.%s/1", name);
    cJSON_AddStringToObject(d, "schema", schema);
    cJSON_AddItemToObject(d, "machine", cJSON_Duplicate(c->machine, true));
    cJSON_AddItemToObject(d, "results", cJSON_CreateArray());
    cJSON_AddItemToObject(d, "notes", cJSON_CreateArray());
    return d;
}

cJSON *ll_hw_results(cJSON *doc) { return cJSON_GetObjectItemCaseSensitive(doc, "results"); }

void ll_hw_note(cJSON *doc, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(doc, "notes"), cJSON_CreateString(buf));
}

// A finite number, or null (JSON has no NaN or infinity).
static void add_num(cJSON *o, const char *key, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(o, key, v);
    else cJSON_AddNullToObject(o, key);
}

cJSON *ll_hw_row(cJSON *doc, const char *device, const ll_hw_meas *m, const char *rate_key, double rate_scale,
                 double spec, const char *spec_unit, const char *spec_source) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "device", device);
    cJSON_AddStringToObject(r, "kind", m->kind);
    cJSON_AddStringToObject(r, "dtype", m->dtype);
    cJSON_AddStringToObject(r, "impl", m->impl);
    if (m->validated < 0) cJSON_AddNullToObject(r, "validated");
    else cJSON_AddBoolToObject(r, "validated", m->validated == 1);
    if (m->validated >= 0) {
        add_num(r, "max_error", m->err);
        add_num(r, "tolerance", m->tol);
    }
    if (m->t.reps > 0) {
        cJSON *t = cJSON_AddObjectToObject(r, "time_s");
        add_num(t, "median", m->t.median);
        add_num(t, "min", m->t.min);
        add_num(t, "max", m->t.max);
        add_num(t, "q1", m->t.q1);
        add_num(t, "q3", m->t.q3);
        cJSON_AddNumberToObject(t, "reps", m->t.reps);
        add_num(r, "spread_pct", ll_hw_spread_pct(&m->t));
        if (rate_key) add_num(r, rate_key, ll_hw_rate(m, rate_scale));
        if (rate_key && spec > 0) {
            cJSON *s = cJSON_AddObjectToObject(r, "spec");
            cJSON_AddNumberToObject(s, "value", spec);
            cJSON_AddStringToObject(s, "unit", spec_unit);
            cJSON_AddStringToObject(s, "source", spec_source);
            add_num(r, "pct_of_spec", 100.0 * ll_hw_rate(m, rate_scale) / spec);
        }
    } else {
        cJSON_AddStringToObject(r, "skipped", m->note[0] ? m->note : "not run");
    }
    if (m->t.reps > 0 && m->note[0]) cJSON_AddStringToObject(r, "note", m->note);
    cJSON_AddItemToArray(ll_hw_results(doc), r);
    return r;
}

static ll_status mkdir_p(const char *dir, ll_error *err) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return ll_err_set(err, LL_ERR_ARG, "%s: path too long", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(path, 0777) != 0 && errno != EEXIST)
            return ll_err_set(err, LL_ERR_IO, "cannot create directory %s: %s", path, strerror(errno));
        *p = '/';
    }
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
        return ll_err_set(err, LL_ERR_IO, "cannot create directory %s: %s (choose another with --json DIR)", path,
                          strerror(errno));
    return LL_OK;
}

ll_status ll_hw_write_doc(const char *dir, const char *name, const cJSON *doc, ll_error *err) {
    ll_status st = mkdir_p(dir, err);
    if (st != LL_OK) return st;
    char tmp[4200], dst[4200];
    snprintf(tmp, sizeof tmp, "%s/.%s.json.tmp.%ld", dir, name, (long)getpid());
    snprintf(dst, sizeof dst, "%s/%s.json", dir, name);
    char *text = cJSON_Print(doc);
    if (!text) return ll_err_set(err, LL_ERR_NOMEM, "out of memory formatting %s", dst);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        free(text);
        return ll_err_set(err, LL_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    }
    size_t len = strlen(text);
    bool ok = fwrite(text, 1, len, f) == len && fputc('\n', f) != EOF;
    ok = fflush(f) == 0 && ok;
    ok = fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    free(text);
    if (!ok || rename(tmp, dst) != 0) {
        int e = errno;
        unlink(tmp);
        return ll_err_set(err, LL_ERR_IO, "cannot write %s: %s (disk full?)", dst, strerror(e));
    }
    return LL_OK;
}
