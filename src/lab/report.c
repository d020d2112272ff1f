// report.c — `llmlab report`: REPORT.md and a self-contained report.html (inline SVG) from the JSON results of
// `bench hw`, `bench model` and quality runs, optionally side by side with another folder. Never measures.
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "lab/report_internal.h"

typedef struct doc {
    ll_lab_buf md, html;
} doc;

// ---- document primitives: every call writes the Markdown and the HTML ----------------------------------------
static void heading(doc *d, int level, const char *t) {
    ll_lab_buf_printf(&d->md, "\n%.*s ", level, "####");
    ll_lab_buf_md(&d->md, t, true); // one line
    ll_lab_buf_printf(&d->md, "\n\n");
    ll_lab_buf_printf(&d->html, "<h%d>", level);
    ll_lab_buf_html(&d->html, t);
    ll_lab_buf_printf(&d->html, "</h%d>\n", level);
}

static void para(doc *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void para(doc *d, const char *fmt, ...) {
    char t[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t, sizeof t, fmt, ap);
    va_end(ap);
    ll_lab_buf_md(&d->md, t, false);
    ll_lab_buf_printf(&d->md, "\n\n");
    ll_lab_buf_printf(&d->html, "<p>");
    ll_lab_buf_html(&d->html, t);
    ll_lab_buf_printf(&d->html, "</p>\n");
}

#define MAXC 12
typedef char cell[160];

static void table_head(doc *d, int n, const char *const *cols) {
    ll_lab_buf_printf(&d->md, "|");
    for (int i = 0; i < n; i++) {
        ll_lab_buf_printf(&d->md, " ");
        ll_lab_buf_md(&d->md, cols[i], true);
        ll_lab_buf_printf(&d->md, " |");
    }
    ll_lab_buf_printf(&d->md, "\n|");
    for (int i = 0; i < n; i++) ll_lab_buf_printf(&d->md, i ? " ---: |" : " --- |");
    ll_lab_buf_printf(&d->md, "\n");
    ll_lab_buf_printf(&d->html, "<table>\n<tr>");
    for (int i = 0; i < n; i++) {
        ll_lab_buf_printf(&d->html, "<th>");
        ll_lab_buf_html(&d->html, cols[i]);
        ll_lab_buf_printf(&d->html, "</th>");
    }
    ll_lab_buf_printf(&d->html, "</tr>\n");
}

static void table_row(doc *d, int n, cell *c) {
    ll_lab_buf_printf(&d->md, "|");
    ll_lab_buf_printf(&d->html, "<tr>");
    for (int i = 0; i < n; i++) {
        ll_lab_buf_printf(&d->md, " ");
        ll_lab_buf_md(&d->md, c[i], true);
        ll_lab_buf_printf(&d->md, " |");
        bool num = (c[i][0] >= '0' && c[i][0] <= '9') || !strncmp(c[i], "—", strlen("—"));
        ll_lab_buf_printf(&d->html, num ? "<td class='n'>" : "<td>");
        ll_lab_buf_html(&d->html, c[i]);
        ll_lab_buf_printf(&d->html, "</td>");
    }
    ll_lab_buf_printf(&d->md, "\n");
    ll_lab_buf_printf(&d->html, "</tr>\n");
}

static void table_end(doc *d) {
    ll_lab_buf_printf(&d->md, "\n");
    ll_lab_buf_printf(&d->html, "</table>\n");
}

static void fmt_num(char *b, size_t cap, double v) {
    if (!isfinite(v)) snprintf(b, cap, "—");
    else if (fabs(v) >= 1000) snprintf(b, cap, "%.0f", v);
    else if (fabs(v) >= 10) snprintf(b, cap, "%.1f", v);
    else snprintf(b, cap, "%.3g", v);
}

static void fmt_bytes(char *b, size_t cap, double v) {
    if (!isfinite(v)) snprintf(b, cap, "—");
    else if (v >= 1073741824.0) snprintf(b, cap, "%.2f GiB", v / 1073741824.0);
    else if (v >= 1048576.0) snprintf(b, cap, "%.1f MiB", v / 1048576.0);
    else snprintf(b, cap, "%.0f KiB", v / 1024.0);
}

static void fmt_pct(char *b, size_t cap, double v) {
    if (isfinite(v)) snprintf(b, cap, "%.1f%%", v);
    else snprintf(b, cap, "—");
}

// ---- loading -----------------------------------------------------------------------------------------------
static cJSON *load_doc(const char *dir, const char *name) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%s.json", dir, name);
    return ll_lab_json_read(p);
}

static void results_load(ll_lab_results *r, const char *dir) {
    memset(r, 0, sizeof *r);
    r->dir = dir;
    r->sys = load_doc(dir, "system_info"), r->gemm = load_doc(dir, "gemm"), r->memory = load_doc(dir, "memory");
    r->attention = load_doc(dir, "attention"), r->alloc = load_doc(dir, "alloc");
    r->transfer = load_doc(dir, "transfer"), r->launch = load_doc(dir, "launch"), r->model = load_doc(dir, "model");
    r->quality = load_doc(dir, "quality");
    if (!r->quality) r->quality = load_doc(dir, "perplexity");
    r->run = load_doc(dir, "run");
}

static void results_free(ll_lab_results *r) {
    cJSON *all[] = {r->sys, r->gemm, r->memory, r->attention, r->alloc, r->transfer, r->launch, r->model, r->quality, r->run};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) cJSON_Delete(all[i]);
}

static bool results_any(const ll_lab_results *r) {
    return r->sys || r->gemm || r->memory || r->attention || r->alloc || r->transfer || r->launch || r->model || r->quality ||
           r->run;
}

static const cJSON *machine_of(const ll_lab_results *r) {
    const cJSON *all[] = {r->sys, r->model, r->gemm, r->memory};
    for (int i = 0; i < 4; i++)
        if (all[i] && cJSON_GetObjectItem(all[i], "machine")) return cJSON_GetObjectItem(all[i], "machine");
    return NULL;
}

// The first test of model m named with prefix ("pp" / "tg") at depth 0: its median t/s and roofline.
static const cJSON *first_test(const cJSON *m, const char *prefix) {
    const cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(m, "tests"))
        if (!strncmp(ll_lab_str(t, "test"), prefix, 2) && !(ll_lab_num(t, "n_depth") > 0)) return t;
    return NULL;
}

static double test_ts(const cJSON *t) { return t ? ll_lab_num(cJSON_GetObjectItem(t, "ts"), "median") : NAN; }
static double test_pct(const cJSON *t) { return t ? ll_lab_num(cJSON_GetObjectItem(t, "roofline"), "pct_of_ceiling") : NAN; }
static double model_mem(const cJSON *m) {
    const cJSON *mem = cJSON_GetObjectItem(m, "memory");
    return ll_lab_num(mem, "weights_bytes") + ll_lab_num(mem, "kv_bytes");
}

// ---- sections ----------------------------------------------------------------------------------------------
// A run that did not finish (run.json of `llmlab bench`, or a model.json / quality.json marked partial) is said
// first: the tables below hold only what finished.
static void partial_banner(doc *d, const ll_lab_results *r) {
    const char *status = ll_lab_str(r->run, "status");
    bool run_partial = r->run && strcmp(status, "complete");
    bool model_partial = cJSON_IsTrue(cJSON_GetObjectItem(r->model, "partial"));
    bool quality_partial = cJSON_IsTrue(cJSON_GetObjectItem(r->quality, "partial"));
    if (!run_partial && !model_partial && !quality_partial) return;
    char steps[1024] = "";
    const cJSON *st;
    cJSON_ArrayForEach(st, cJSON_GetObjectItem(r->run, "steps"))
        snprintf(steps + strlen(steps), sizeof steps - strlen(steps), "%s%s: %s", steps[0] ? "; " : "",
                 ll_lab_str(st, "step"), ll_lab_str(st, "status"));
    ll_lab_buf_printf(&d->html, "<div class='partial'>");
    if (run_partial)
        para(d, "PARTIAL REPORT: the `llmlab bench` run started %s was %s%s%s%s. Only the steps and tests that "
                "finished are below.", ll_lab_str(r->run, "started_utc"),
             !strcmp(status, "interrupted") ? "interrupted (Ctrl-C)" : !strcmp(status, "running") ? "killed or still running"
                                                                      : "not completed (a step failed)",
             steps[0] ? " (" : "", steps, steps[0] ? ")" : "");
    if (model_partial) para(d, "PARTIAL: model.json was interrupted: unfinished tests and models are left out.");
    if (quality_partial) para(d, "PARTIAL: quality.json was interrupted: unfinished types are left out.");
    ll_lab_buf_printf(&d->html, "</div>\n");
}

static const char *run_label(const ll_lab_results *r, int nr) { return nr > 1 ? r->dir : ""; }

static void summary(doc *d, const ll_lab_results *rs, int nr) {
    heading(d, 2, "Executive summary");
    bool any = false;
    for (int k = 0; k < nr; k++) any |= cJSON_GetArraySize(cJSON_GetObjectItem(rs[k].model, "results")) > 0;
    if (!any) {
        para(d, "No model results (model.json) in %s: run `llmlab bench model -m FILE` first.", rs[0].dir);
        return;
    }
    const char *cols[] = {"run", "engine", "model", "type", "memory (weights + KV)", "prompt t/s", "generation t/s",
                          "prompt % of GEMM peak", "generation % of bandwidth"};
    int off = nr > 1 ? 0 : 1;
    table_head(d, 9 - off, cols + off);
    for (int k = 0; k < nr; k++) {
        const cJSON *m;
        cJSON_ArrayForEach(m, cJSON_GetObjectItem(rs[k].model, "results")) {
            cell c[MAXC];
            const cJSON *pp = first_test(m, "pp"), *tg = first_test(m, "tg");
            snprintf(c[0], sizeof c[0], "%s", run_label(&rs[k], nr));
            snprintf(c[1], sizeof c[1], "llmlab %s (%.0f threads)", ll_lab_str(m, "backend"),
                     ll_lab_num(pp ? pp : tg, "threads"));
            snprintf(c[2], sizeof c[2], "%s", ll_lab_str(m, "model"));
            snprintf(c[3], sizeof c[3], "%s", ll_lab_str(m, "type"));
            fmt_bytes(c[4], sizeof c[4], model_mem(m));
            char a[32], b[32];
            fmt_num(a, sizeof a, test_ts(pp));
            fmt_num(b, sizeof b, test_ts(tg));
            snprintf(c[5], sizeof c[5], "%s%s%s", a, pp ? " " : "", pp ? ll_lab_str(pp, "test") : "");
            snprintf(c[6], sizeof c[6], "%s%s%s", b, tg ? " " : "", tg ? ll_lab_str(tg, "test") : "");
            fmt_pct(c[7], sizeof c[7], test_pct(pp));
            fmt_pct(c[8], sizeof c[8], test_pct(tg));
            table_row(d, 9 - off, c + off);
        }
    }
    table_end(d);
}

static void ceilings(doc *d, const ll_lab_results *rs, int nr) {
    heading(d, 2, "Ceilings");
    para(d, "What the percentages divide by: generation against the best measured read bandwidth (decode reads every "
            "weight once per token), prompt processing against the best measured GEMM (fp32 on CPU, bf16 on GPU; "
            "quantized weights, which multiply int8 activations with integer dots, against the int8 GEMM).");
    const char *cols[] = {"run", "device", "read bandwidth GB/s", "source", "GEMM peak GFLOPS", "source", "int8 GEMM GOPS",
                          "source"};
    int off = nr > 1 ? 0 : 1;
    table_head(d, 8 - off, cols + off);
    for (int k = 0; k < nr; k++) {
        const char *devs[] = {"cpu", "cuda"};
        for (int i = 0; i < 2; i++) {
            ll_lab_ceil c;
            bool hw = ll_lab_ceil_load(rs[k].dir, devs[i], &c);
            const cJSON *mc = cJSON_GetObjectItem(cJSON_GetObjectItem(rs[k].model, "ceilings"), devs[i]);
            if (!hw && !mc) continue;
            if (c.read_gbps <= 0 && mc) c.read_gbps = ll_lab_num(mc, "read_gbps"), snprintf(c.read_src, sizeof c.read_src, "model.json: %s", ll_lab_str(mc, "read_source"));
            if (c.gemm_gflops <= 0 && mc) c.gemm_gflops = ll_lab_num(mc, "gemm_gflops"), snprintf(c.gemm_src, sizeof c.gemm_src, "model.json: %s", ll_lab_str(mc, "gemm_source"));
            cell r[MAXC];
            snprintf(r[0], sizeof r[0], "%s", run_label(&rs[k], nr));
            snprintf(r[1], sizeof r[1], "%s", devs[i]);
            fmt_num(r[2], sizeof r[2], c.read_gbps > 0 ? c.read_gbps : NAN);
            snprintf(r[3], sizeof r[3], "%.159s", c.read_src[0] ? c.read_src : "not measured");
            fmt_num(r[4], sizeof r[4], c.gemm_gflops > 0 ? c.gemm_gflops : NAN);
            snprintf(r[5], sizeof r[5], "%.159s", c.gemm_src[0] ? c.gemm_src : "not measured");
            if (c.int8_gops <= 0 && mc && ll_lab_num(mc, "int8_gops") > 0)
                c.int8_gops = ll_lab_num(mc, "int8_gops"), snprintf(c.int8_src, sizeof c.int8_src, "model.json: %s", ll_lab_str(mc, "int8_source"));
            fmt_num(r[6], sizeof r[6], c.int8_gops > 0 ? c.int8_gops : NAN);
            snprintf(r[7], sizeof r[7], "%.159s", c.int8_src[0] ? c.int8_src : "not measured");
            table_row(d, 8 - off, r + off);
        }
    }
    table_end(d);
}

// fit's predictions (recorded by bench model next to each measurement) against the measured generation.
static void fit_vs_measured(doc *d, const ll_lab_results *rs, int nr) {
    bool any = false;
    const cJSON *m;
    for (int k = 0; k < nr; k++)
        cJSON_ArrayForEach(m, cJSON_GetObjectItem(rs[k].model, "results")) any |= cJSON_GetObjectItem(m, "fit") != NULL;
    if (!any) return;
    heading(d, 2, "Generation: predicted (llmlab fit) vs measured");
    para(d, "Engine prediction = 1 / (sum over the model's matrices of a calibrated one-token ll_matmul time on "
            "synthetic weights of the same shape and type, streamed from memory as in decode); it leaves out norms, "
            "RoPE, attention and sampling. Bound = read bandwidth / weight bytes per token. Error = predicted / measured - 1.");
    const char *cols[] = {"run", "model", "type", "threads", "measured t/s", "predicted t/s (engine)", "error",
                          "bound t/s (bandwidth)", "measured % of bound"};
    int off = nr > 1 ? 0 : 1;
    table_head(d, 9 - off, cols + off);
    for (int k = 0; k < nr; k++)
        cJSON_ArrayForEach(m, cJSON_GetObjectItem(rs[k].model, "results")) {
            const cJSON *f = cJSON_GetObjectItem(m, "fit"), *tg = first_test(m, "tg");
            if (!f || !tg) continue;
            double meas = test_ts(tg), pe = ll_lab_num(f, "pred_tg_engine"), pb = ll_lab_num(f, "pred_tg_bound");
            cell c[MAXC];
            snprintf(c[0], sizeof c[0], "%s", run_label(&rs[k], nr));
            snprintf(c[1], sizeof c[1], "%s", ll_lab_str(m, "model"));
            snprintf(c[2], sizeof c[2], "%s", ll_lab_str(m, "type"));
            fmt_num(c[3], sizeof c[3], ll_lab_num(tg, "threads"));
            double sd = ll_lab_num(cJSON_GetObjectItem(tg, "ts"), "sd");
            snprintf(c[4], sizeof c[4], "%.1f %s", meas, ll_lab_str(tg, "test"));
            if (isfinite(sd) && sd > 0.1 * meas) // a busy machine: say how far the repetitions spread
                snprintf(c[4], sizeof c[4], "%.1f %s (sd %.1f: noisy)", meas, ll_lab_str(tg, "test"), sd);
            if (*ll_lab_str(f, "skipped")) snprintf(c[5], sizeof c[5], "skipped: %.140s", ll_lab_str(f, "skipped"));
            else fmt_num(c[5], sizeof c[5], pe);
            if (isfinite(pe) && meas > 0) snprintf(c[6], sizeof c[6], "%+.1f%%", 100 * (pe / meas - 1));
            else snprintf(c[6], sizeof c[6], "—");
            fmt_num(c[7], sizeof c[7], pb);
            fmt_pct(c[8], sizeof c[8], isfinite(pb) && pb > 0 ? 100 * meas / pb : NAN);
            table_row(d, 9 - off, c + off);
        }
    table_end(d);
}

// A hardware section as a table of the given keys of its rows; absent files are stated.
typedef struct col {
    const char *key, *head;
    char kind; // s string, n number, b bytes, p percent, t time_s.median
} col;

static void hw_section(doc *d, const ll_lab_results *rs, int nr, const char *title, const char *file, size_t field,
                       const col *cols, int nc) {
    heading(d, 3, title);
    const char *heads[MAXC + 1];
    int off = nr > 1 ? 0 : 1;
    heads[0] = "run";
    for (int i = 0; i < nc; i++) heads[i + 1] = cols[i].head;
    bool started = false;
    const cJSON *empty[2] = {NULL, NULL};
    for (int k = 0; k < nr; k++) {
        const cJSON *doc_ = *(cJSON *const *)((const char *)&rs[k] + field);
        if (!doc_) continue; // stated after the table
        const cJSON *row;
        int n = 0;
        cJSON_ArrayForEach(row, cJSON_GetObjectItem(doc_, "results")) {
            if (!started) table_head(d, nc + 1 - off, heads + off), started = true;
            cell c[MAXC + 1];
            snprintf(c[0], sizeof c[0], "%s", run_label(&rs[k], nr));
            for (int i = 0; i < nc; i++) {
                char *o = c[i + 1];
                const col *cl = &cols[i];
                if (cl->kind == 's') snprintf(o, sizeof c[0], "%.150s", ll_lab_str(row, cl->key));
                else if (cl->kind == 'b') fmt_bytes(o, sizeof c[0], ll_lab_num(row, cl->key));
                else if (cl->kind == 'p') fmt_pct(o, sizeof c[0], ll_lab_num(row, cl->key));
                else fmt_num(o, sizeof c[0], ll_lab_num(row, cl->key));
                if (cl->kind == 'n' && !isfinite(ll_lab_num(row, cl->key)) && cJSON_GetObjectItem(row, "skipped"))
                    snprintf(o, sizeof c[0], "skipped: %.130s", ll_lab_str(row, "skipped"));
            }
            table_row(d, nc + 1 - off, c + off);
            n++;
        }
        if (!n && k < 2) empty[k] = doc_;
    }
    if (started) table_end(d);
    for (int k = 0; k < nr && k < 2; k++) {
        if (!empty[k]) continue;
        const cJSON *note = cJSON_GetArrayItem(cJSON_GetObjectItem(empty[k], "notes"), 0);
        para(d, "%s%s%s.json has no rows%s%s.", nr > 1 ? rs[k].dir : "", nr > 1 ? ": " : "", file, note ? ": " : "",
             note && note->valuestring ? note->valuestring : "");
    }
    for (int k = 0; k < nr; k++)
        if (!*(cJSON *const *)((const char *)&rs[k] + field))
            para(d, "%s%sNot measured: no %s.json in %s (run `llmlab bench hw --only %s`).", nr > 1 ? rs[k].dir : "",
                 nr > 1 ? ": " : "", file, rs[k].dir, file);
}

static void hardware(doc *d, const ll_lab_results *rs, int nr) {
    heading(d, 2, "Hardware (llmlab bench hw)");
    static const col gemm[] = {{"device", "device", 's'}, {"dtype", "dtype", 's'}, {"impl", "impl", 's'}, {"m", "size", 'n'},
                               {"tflops", "TFLOPS", 'n'}, {"pct_of_spec", "% of spec", 'p'}, {"spread_pct", "spread %", 'n'}};
    static const col mem[] = {{"device", "device", 's'}, {"kind", "kind", 's'}, {"threads", "threads", 'n'},
                              {"array_bytes", "array", 'b'}, {"gbps", "GB/s", 'n'}, {"pct_of_spec", "% of spec", 'p'}};
    static const col att[] = {{"device", "device", 's'}, {"kind", "kind", 's'}, {"dtype", "dtype", 's'}, {"impl", "impl", 's'},
                              {"seq", "seq", 'n'}, {"head_dim", "head_dim", 'n'}, {"heads", "heads", 'n'},
                              {"tflops", "TFLOPS", 'n'}};
    static const col alc[] = {{"device", "device", 's'}, {"largest_ok_bytes", "largest allocation", 'b'},
                              {"bound_bytes", "probed up to", 'b'}, {"limited_by", "limited by", 's'}, {"impl", "how", 's'}};
    static const col trf[] = {{"device", "device", 's'}, {"kind", "kind", 's'}, {"bytes", "bytes", 'b'}, {"gbps", "GB/s", 'n'},
                              {"pct_of_spec", "% of spec", 'p'}};
    static const col lau[] = {{"device", "device", 's'}, {"kind", "kind", 's'}, {"us_per_op", "µs per op", 'n'}};
    hw_section(d, rs, nr, "GEMM", "gemm", offsetof(ll_lab_results, gemm), gemm, 7);
    hw_section(d, rs, nr, "Memory bandwidth", "memory", offsetof(ll_lab_results, memory), mem, 6);
    hw_section(d, rs, nr, "Attention", "attention", offsetof(ll_lab_results, attention), att, 8);
    hw_section(d, rs, nr, "Largest allocation", "alloc", offsetof(ll_lab_results, alloc), alc, 5);
    hw_section(d, rs, nr, "Host-device transfer", "transfer", offsetof(ll_lab_results, transfer), trf, 5);
    hw_section(d, rs, nr, "Launch overhead", "launch", offsetof(ll_lab_results, launch), lau, 3);
}

static void models(doc *d, const ll_lab_results *rs, int nr) {
    heading(d, 2, "Models (llmlab bench model)");
    for (int k = 0; k < nr; k++) {
        if (!rs[k].model) {
            para(d, "%s%sNot measured: no model.json in %s (run `llmlab bench model -m FILE`).", nr > 1 ? rs[k].dir : "",
                 nr > 1 ? ": " : "", rs[k].dir);
            continue;
        }
        const cJSON *m;
        cJSON_ArrayForEach(m, cJSON_GetObjectItem(rs[k].model, "results")) {
            char t[300];
            snprintf(t, sizeof t, "%s%s%s %s (%s)", nr > 1 ? rs[k].dir : "", nr > 1 ? ": " : "", ll_lab_str(m, "model"),
                     ll_lab_str(m, "type"), ll_lab_str(m, "backend"));
            heading(d, 3, t);
            para(d, "%s", ll_lab_str(m, "description"));
            const cJSON *l = cJSON_GetObjectItem(m, "load"), *mem = cJSON_GetObjectItem(m, "memory");
            char w[32], kv[32], act[32], rss[32], cold[256];
            fmt_bytes(w, sizeof w, ll_lab_num(mem, "weights_bytes"));
            fmt_bytes(kv, sizeof kv, ll_lab_num(mem, "kv_bytes"));
            fmt_bytes(act, sizeof act, ll_lab_num(mem, "activations_bytes"));
            fmt_bytes(rss, sizeof rss, ll_lab_num(mem, "peak_rss_bytes"));
            double cs = ll_lab_num(l, "cold_s");
            if (isfinite(cs)) snprintf(cold, sizeof cold, "%.0f ms", cs * 1e3);
            else snprintf(cold, sizeof cold, "not measured (%.200s)", ll_lab_str(l, "cold_note"));
            para(d, "Load: cold %s, warm %.0f ms (%s). Memory: weights %s, KV cache %s (n_ctx %.0f, %s), activations %s, "
                    "peak RSS %s.", cold, ll_lab_num(l, "warm_s") * 1e3, ll_lab_str(l, "definition"), w, kv,
                 ll_lab_num(mem, "kv_n_ctx"), ll_lab_str(mem, "kv_type"), act, rss);
            const char *cols[] = {"test", "threads", "t/s (mean ± sd)", "median t/s", "achieved", "% of ceiling"};
            table_head(d, 6, cols);
            const cJSON *te;
            cJSON_ArrayForEach(te, cJSON_GetObjectItem(m, "tests")) {
                cell c[MAXC];
                const cJSON *ts = cJSON_GetObjectItem(te, "ts"), *rf = cJSON_GetObjectItem(te, "roofline");
                snprintf(c[0], sizeof c[0], "%s", ll_lab_str(te, "test"));
                fmt_num(c[1], sizeof c[1], ll_lab_num(te, "threads"));
                snprintf(c[2], sizeof c[2], "%.2f ± %.2f", ll_lab_num(ts, "mean"), ll_lab_num(ts, "sd"));
                snprintf(c[3], sizeof c[3], "%.2f", ll_lab_num(ts, "median"));
                if (!strcmp(ll_lab_str(rf, "bound"), "memory")) snprintf(c[4], sizeof c[4], "%.2f GB/s of weights", ll_lab_num(rf, "achieved_gbps"));
                else snprintf(c[4], sizeof c[4], "%.2f GFLOPS", ll_lab_num(rf, "achieved_gflops"));
                fmt_pct(c[5], sizeof c[5], ll_lab_num(rf, "pct_of_ceiling"));
                table_row(d, 6, c);
            }
            table_end(d);
        }
    }
}

// Every object with a "ppl" member, labelled by its model/type/file or the key it sits under.
static void quality_rows(doc *d, const cJSON *o, const char *label, const char *run, int off, int *n) {
    if (!o) return;
    if (cJSON_IsObject(o) && cJSON_IsNumber(cJSON_GetObjectItem(o, "ppl"))) {
        const cJSON *vb = cJSON_GetObjectItem(o, "vs_base");
        const char *lb = *ll_lab_str(o, "model") ? ll_lab_str(o, "model") : *ll_lab_str(o, "type") ? ll_lab_str(o, "type")
                         : *ll_lab_str(o, "file") ? ll_lab_str(o, "file") : label;
        cell c[MAXC];
        snprintf(c[0], sizeof c[0], "%s", run);
        snprintf(c[1], sizeof c[1], "%.150s", lb);
        snprintf(c[2], sizeof c[2], "%.4f ± %.4f", ll_lab_num(o, "ppl"), ll_lab_num(o, "ppl_stderr"));
        fmt_num(c[3], sizeof c[3], ll_lab_num(vb, "dppl"));
        fmt_num(c[4], sizeof c[4], ll_lab_num(vb, "kld_mean"));
        fmt_pct(c[5], sizeof c[5], ll_lab_num(vb, "top1_pct"));
        table_row(d, 6 - off, c + off);
        (*n)++;
        return;
    }
    const cJSON *ch;
    cJSON_ArrayForEach(ch, o) quality_rows(d, ch, ch->string ? ch->string : label, run, off, n);
}

// The sweep layout (`llmlab bench`'s quality step, `llmlab perplexity --sweep --json`): one row per type.
static void quality_sweep(doc *d, const cJSON *q, const char *run, int off) {
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(q, "sweep")) {
        const cJSON *r = cJSON_GetObjectItem(e, "result"), *vb = cJSON_GetObjectItem(r, "vs_base");
        cell c[MAXC];
        snprintf(c[0], sizeof c[0], "%s", run);
        snprintf(c[1], sizeof c[1], "%s", ll_lab_str(e, "type"));
        fmt_bytes(c[2], sizeof c[2], ll_lab_num(e, "file_bytes"));
        double bpw = ll_lab_num(e, "bits_per_weight");
        if (isfinite(bpw)) snprintf(c[3], sizeof c[3], "%.2f", bpw);
        else snprintf(c[3], sizeof c[3], "—");
        if (r) snprintf(c[4], sizeof c[4], "%.4f ± %.4f", ll_lab_num(r, "ppl"), ll_lab_num(r, "ppl_stderr"));
        else snprintf(c[4], sizeof c[4], "n/a: %.140s", ll_lab_str(e, "error"));
        double dppl = ll_lab_num(vb, "dppl");
        if (isfinite(dppl)) snprintf(c[5], sizeof c[5], "%+.4f", dppl);
        else snprintf(c[5], sizeof c[5], "—");
        double k = ll_lab_num(vb, "kld_mean");
        if (isfinite(k)) snprintf(c[6], sizeof c[6], "%.6f ± %.6f", k, ll_lab_num(vb, "kld_stderr"));
        else snprintf(c[6], sizeof c[6], "—");
        k = ll_lab_num(vb, "kld_p99");
        if (isfinite(k)) snprintf(c[7], sizeof c[7], "%.5f", k);
        else snprintf(c[7], sizeof c[7], "—");
        fmt_pct(c[8], sizeof c[8], ll_lab_num(vb, "top1_pct"));
        table_row(d, 9 - off, c + off);
    }
}

static void quality(doc *d, const ll_lab_results *rs, int nr) {
    heading(d, 2, "Quality (perplexity, KL divergence)");
    int off = nr > 1 ? 0 : 1, n = 0;
    bool any = false, sweep = false;
    for (int k = 0; k < nr; k++) any |= rs[k].quality != NULL, sweep |= cJSON_GetObjectItem(rs[k].quality, "sweep") != NULL;
    if (!any) {
        para(d, "Not measured: no quality.json or perplexity.json in %s (run `llmlab bench -m REAL.gguf`, or "
                "`llmlab perplexity --sweep REAL.gguf -f TEXT --json DIR/quality.json`).", rs[0].dir);
        return;
    }
    if (sweep) {
        for (int k = 0; k < nr; k++) {
            const cJSON *q = rs[k].quality;
            if (!cJSON_GetObjectItem(q, "sweep")) continue;
            para(d, "%s%s%s quantized to each type and compared with itself on %s: %.0f tokens, chunks of %.0f (at most "
                    "%.0f), llama.cpp's perplexity method; KLD = KL(P_base || P_type) per scored token.",
                 nr > 1 ? rs[k].dir : "", nr > 1 ? ": " : "", ll_lab_str(q, "base"), ll_lab_str(q, "text"),
                 ll_lab_num(q, "n_tokens"), ll_lab_num(q, "n_ctx"), ll_lab_num(q, "max_chunks"));
        }
        const char *cols[] = {"run", "type", "file size", "bits/weight", "PPL", "ΔPPL vs base", "mean KLD", "99% KLD",
                              "same top-1"};
        table_head(d, 9 - off, cols + off);
        for (int k = 0; k < nr; k++)
            if (cJSON_GetObjectItem(rs[k].quality, "sweep")) quality_sweep(d, rs[k].quality, run_label(&rs[k], nr), off);
        table_end(d);
    }
    bool other = false;
    for (int k = 0; k < nr; k++) other |= rs[k].quality && !cJSON_GetObjectItem(rs[k].quality, "sweep");
    if (!other) return;
    const char *cols[] = {"run", "model", "PPL", "ΔPPL vs base", "mean KLD", "same top-1"};
    table_head(d, 6 - off, cols + off);
    for (int k = 0; k < nr; k++)
        if (!cJSON_GetObjectItem(rs[k].quality, "sweep")) quality_rows(d, rs[k].quality, "result", run_label(&rs[k], nr), off, &n);
    table_end(d);
    if (!n) para(d, "The quality file has no result with a \"ppl\" field.");
}

// "Will it fit" rows for a few presets on one device: the best type that fits in the memory the results
// recorded, and the generation t/s that device's measured bandwidth allows.
static void fit_rows(doc *d, const ll_lab_results *r, const char *dev) {
    ll_lab_ceil ce;
    ll_lab_ceil_load(r->dir, dev, &ce);
    const cJSON *mc = cJSON_GetObjectItem(cJSON_GetObjectItem(r->model, "ceilings"), dev);
    if (!(ce.read_gbps > 0) && mc) ce.read_gbps = ll_lab_num(mc, "read_gbps");
    if (!(ce.read_gbps > 0)) ce.read_gbps = 0;
    double tot = ll_lab_num(machine_of(r), "mem_total_bytes");
    if (!ce.mem_avail && !strcmp(dev, "cpu") && isfinite(tot)) ce.mem_avail = (uint64_t)(tot * 0.9);
    if (!ce.mem_avail || (strcmp(dev, "cpu") && ce.read_gbps <= 0)) return; // no GPU measured here
    const char *presets[] = {"llama-3.2-1b", "mistral-7b", "llama3-8b", "llama3-70b"};
    for (int i = 0; i < 4; i++) {
        const ll_preset *p = ll_preset_find(presets[i]);
        if (!p) continue;
        ll_lab_shape s;
        ll_lab_shape_from_preset(p, &s);
        cell c[MAXC];
        snprintf(c[0], sizeof c[0], "Run %s (%s, 4096 context)?", presets[i], dev);
        snprintf(c[1], sizeof c[1], "no: does not fit even at Q4_0");
        const ll_lab_qtype *q = ll_lab_fit_best(&s, 4096, 512, dev, &ce);
        if (q) {
            ll_lab_fit f;
            ll_lab_fit_compute(&s, q->bpw, 4096, 512, dev, &ce, &f);
            char tg[64] = "";
            if (f.pred_tg > 0) snprintf(tg, sizeof tg, ", at most %.1f t/s generation", f.pred_tg);
            snprintf(c[1], sizeof c[1], "yes at %s (%.1f GB)%s", q->name, f.total / 1e9, tg);
        }
        char b[32];
        fmt_bytes(b, sizeof b, (double)ce.mem_avail);
        snprintf(c[2], sizeof c[2], "fit arithmetic vs %s (%s); read bandwidth %.1f GB/s", b,
                 ce.mem_src[0] ? ce.mem_src : "90% of RAM", ce.read_gbps);
        table_row(d, 3, c);
    }
}

// Advice computed from these measurements only; each line says which numbers it rests on.
static void decision_guide(doc *d, const ll_lab_results *r) {
    heading(d, 2, "Decision guide (from these measurements)");
    const cJSON *m, *best_tg = NULL, *best_pp = NULL, *small = NULL;
    cJSON_ArrayForEach(m, cJSON_GetObjectItem(r->model, "results")) {
        if (test_ts(first_test(m, "tg")) > test_ts(first_test(best_tg, "tg")) || !best_tg) best_tg = m;
        if (test_ts(first_test(m, "pp")) > test_ts(first_test(best_pp, "pp")) || !best_pp) best_pp = m;
        if (!small || model_mem(m) < model_mem(small)) small = m;
    }
    const char *cols[] = {"question", "answer", "based on"};
    table_head(d, 3, cols);
    cell c[MAXC];
    if (best_tg) {
        const cJSON *t = first_test(best_tg, "tg");
        snprintf(c[0], sizeof c[0], "Fastest generation");
        snprintf(c[1], sizeof c[1], "%s %s: %.2f t/s", ll_lab_str(best_tg, "model"), ll_lab_str(best_tg, "type"), test_ts(t));
        snprintf(c[2], sizeof c[2], "%s median, model.json", t ? ll_lab_str(t, "test") : "no tg test");
        table_row(d, 3, c);
        const cJSON *p = first_test(best_pp, "pp");
        snprintf(c[0], sizeof c[0], "Fastest prompt processing");
        snprintf(c[1], sizeof c[1], "%s %s: %.2f t/s", ll_lab_str(best_pp, "model"), ll_lab_str(best_pp, "type"), test_ts(p));
        snprintf(c[2], sizeof c[2], "%s median, model.json", p ? ll_lab_str(p, "test") : "no pp test");
        table_row(d, 3, c);
        char b[32];
        fmt_bytes(b, sizeof b, model_mem(small));
        snprintf(c[0], sizeof c[0], "Least memory");
        snprintf(c[1], sizeof c[1], "%s %s: %s", ll_lab_str(small, "model"), ll_lab_str(small, "type"), b);
        snprintf(c[2], sizeof c[2], "weights + KV cache, model.json");
        table_row(d, 3, c);
        double pct = test_pct(t);
        snprintf(c[0], sizeof c[0], "Will a smaller type speed up generation?");
        if (!isfinite(pct)) snprintf(c[1], sizeof c[1], "unknown: no bandwidth ceiling was measured");
        else if (ll_lab_num(best_tg, "weight_bytes") < 64.0 * 1048576)
            snprintf(c[1], sizeof c[1], "cannot tell from this model: its weights (%.1f MiB) fit in the CPU caches, so %.0f%% "
                     "of the DRAM bandwidth says nothing about memory-boundness; bench a model larger than the caches",
                     ll_lab_num(best_tg, "weight_bytes") / 1048576.0, pct);
        else if (pct >= 50) snprintf(c[1], sizeof c[1], "yes: generation runs at %.0f%% of the read bandwidth (memory-bound), so t/s grows about as bytes per weight shrink", pct);
        else snprintf(c[1], sizeof c[1], "little: generation reaches only %.0f%% of the read bandwidth; per-token overhead, not weight bytes, limits it", pct);
        snprintf(c[2], sizeof c[2], "%s roofline of the fastest model", t ? ll_lab_str(t, "test") : "");
        table_row(d, 3, c);
    }
    const char *devs[] = {"cpu", "cuda"};
    for (int di = 0; di < 2; di++) fit_rows(d, r, devs[di]);
    table_end(d);
    if (!best_tg) para(d, "No model results: the model rows of this guide need `llmlab bench model`.");
}

static void compare(doc *d, const ll_lab_results *rs) {
    heading(d, 2, "Comparison");
    para(d, "Ratio = %s / %s, for every test both runs made on a model of the same name and type.", rs[0].dir, rs[1].dir);
    const char *cols[] = {"model", "type", "test", "t/s A", "t/s B", "A / B"};
    table_head(d, 6, cols);
    const cJSON *a, *b, *ta, *tb;
    cJSON_ArrayForEach(a, cJSON_GetObjectItem(rs[0].model, "results"))
        cJSON_ArrayForEach(b, cJSON_GetObjectItem(rs[1].model, "results")) {
            if (strcmp(ll_lab_str(a, "model"), ll_lab_str(b, "model")) || strcmp(ll_lab_str(a, "type"), ll_lab_str(b, "type"))) continue;
            cJSON_ArrayForEach(ta, cJSON_GetObjectItem(a, "tests")) cJSON_ArrayForEach(tb, cJSON_GetObjectItem(b, "tests")) {
                if (strcmp(ll_lab_str(ta, "test"), ll_lab_str(tb, "test"))) continue;
                cell c[MAXC];
                double x = test_ts(ta), y = test_ts(tb);
                snprintf(c[0], sizeof c[0], "%s", ll_lab_str(a, "model"));
                snprintf(c[1], sizeof c[1], "%s", ll_lab_str(a, "type"));
                snprintf(c[2], sizeof c[2], "%s", ll_lab_str(ta, "test"));
                fmt_num(c[3], sizeof c[3], x);
                fmt_num(c[4], sizeof c[4], y);
                snprintf(c[5], sizeof c[5], "%.2f", y > 0 ? x / y : NAN);
                table_row(d, 6, c);
            }
        }
    table_end(d);
}

static const char k_css[] =
    "body{font-family:sans-serif;max-width:1100px;margin:24px auto;color:#222}"
    "table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;"
    "text-align:left}td.n{text-align:right}th{background:#f0f0f0}"
    "h2{border-bottom:2px solid #ddd;margin-top:32px}.missing{color:#a00}svg{display:block;margin:12px 0}"
    ".partial{background:#fff3cd;border:1px solid #e0b000;padding:4px 12px;margin:12px 0}";

static void header(doc *d, const ll_lab_results *rs, int nr) {
    ll_lab_buf_printf(&d->md, "# llmlab report\n\n");
    ll_lab_buf_printf(&d->html, "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>llmlab report</title>"
                      "<style>%s</style></head><body>\n<h1>llmlab report</h1>\n", k_css);
    for (int k = 0; k < nr; k++) {
        const cJSON *mc = machine_of(&rs[k]);
        char gpus[256] = "";
        const cJSON *g;
        cJSON_ArrayForEach(g, cJSON_GetObjectItem(mc, "gpus"))
            if (cJSON_IsString(g)) snprintf(gpus + strlen(gpus), sizeof gpus - strlen(gpus), "%s%s", gpus[0] ? ", " : "", g->valuestring);
        double mem = ll_lab_num(mc, "mem_total_bytes");
        para(d, "%s%s: %s%s, %.0f logical cores, %.1f GiB RAM%s%s; measured %s. Every figure below comes from the JSON "
                "files in this folder; nothing was re-measured.", k ? "Compared with " : "Results ", rs[k].dir,
             *ll_lab_str(mc, "cpu_model") ? ll_lab_str(mc, "cpu_model") : "CPU", *ll_lab_str(mc, "hostname") ? "" : "",
             ll_lab_num(mc, "logical_cores"), isfinite(mem) ? mem / 1073741824.0 : NAN, gpus[0] ? ", GPUs: " : "", gpus,
             *ll_lab_str(mc, "timestamp_utc") ? ll_lab_str(mc, "timestamp_utc") : "at an unknown time");
    }
}

ll_status ll_lab_report(const char *dir, const char *other, const char *outdir, ll_error *err) {
    ll_lab_results rs[2];
    int nr = other ? 2 : 1;
    results_load(&rs[0], dir);
    if (other) results_load(&rs[1], other);
    ll_status st = LL_OK;
    for (int k = 0; k < nr && st == LL_OK; k++)
        if (!results_any(&rs[k]))
            st = ll_err_set(err, LL_ERR_MISSING, "%s: no results JSON here (system_info, gemm, memory, model, quality ...): "
                            "run `llmlab bench hw` and `llmlab bench model -m FILE` first", rs[k].dir);
    doc d = {0};
    if (st == LL_OK) {
        header(&d, rs, nr);
        for (int k = 0; k < nr; k++) partial_banner(&d, &rs[k]);
        summary(&d, rs, nr);
        ceilings(&d, rs, nr);
        fit_vs_measured(&d, rs, nr);
        decision_guide(&d, &rs[0]);
        if (nr > 1) compare(&d, rs);
        ll_lab_report_charts(&d.html, rs, nr);
        models(&d, rs, nr);
        hardware(&d, rs, nr);
        quality(&d, rs, nr);
        ll_lab_buf_printf(&d.html, "</body></html>\n");
        if (d.md.oom || d.html.oom) st = ll_err_set(err, LL_ERR_NOMEM, "out of memory writing the report");
    }
    const char *names[2] = {"REPORT.md", "report.html"}, *texts[2] = {d.md.s, d.html.s};
    if (st == LL_OK) st = ll_lab_write_texts(outdir ? outdir : dir, 2, names, texts, err);
    free(d.md.s);
    free(d.html.s);
    for (int k = 0; k < nr; k++) results_free(&rs[k]);
    return st;
}
