// report_charts.c — the figures of report.html, from the loaded results only: the roofline with the measured
// points, t/s by model and type, the memory breakdown, and the GEMM and bandwidth sweeps of `bench hw`.
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "lab/report_internal.h"

static void note(ll_lab_buf *h, const char *text) {
    ll_lab_buf_printf(h, "<p class='missing'>");
    ll_lab_buf_html(h, text);
    ll_lab_buf_printf(h, "</p>\n");
}

static const char *prefix(const ll_lab_results *r, int nr) { return nr > 1 ? r->dir : ""; }

static void ceil_of(const ll_lab_results *r, const char *dev, ll_lab_ceil *c) {
    ll_lab_ceil_load(r->dir, dev, c);
    const cJSON *mc = cJSON_GetObjectItem(cJSON_GetObjectItem(r->model, "ceilings"), dev);
    if (!(c->read_gbps > 0) && mc) c->read_gbps = ll_lab_num(mc, "read_gbps");
    if (!(c->gemm_gflops > 0) && mc) c->gemm_gflops = ll_lab_num(mc, "gemm_gflops");
    if (!(c->read_gbps > 0)) c->read_gbps = 0;
    if (!(c->gemm_gflops > 0)) c->gemm_gflops = 0;
}

// A roof: min(peak, bandwidth x intensity) over intensities 0.01 .. 10^4 (bandwidth unknown: flat).
static void roof(ll_lab_series *l, const char *name, double gbps, double peak) {
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", name);
    l->line = true;
    for (int i = 0; i < 25 && (gbps > 0 || peak > 0); i++) {
        double ai = pow(10, -2 + 6.0 * i / 24), y = gbps > 0 ? gbps * ai : peak;
        if (peak > 0 && y > peak) y = peak;
        l->x[l->n] = ai, l->y[l->n] = y, l->n++;
    }
}

static bool has_backend(const cJSON *model_doc, const char *dev) {
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItem(model_doc, "results"))
        if (!strcmp(ll_lab_str(m, "backend"), dev) && cJSON_GetArraySize(cJSON_GetObjectItem(m, "tests")) > 0) return true;
    return false;
}

// The ceilings of each run and device with model results (CPU and GPU differ by 10-1000x), then one colour per
// model and type with its tests as labelled points ("pp128", "tg32"); past the palette, the rest share a series.
static void roofline(ll_lab_buf *h, const ll_lab_results *rs, int nr) {
    ll_lab_series s[LL_LAB_MAX_SERIES];
    int ns = 0, pts = 0;
    const char *devs[] = {"cpu", "cuda"};
    char nm[96];
    for (int k = 0; k < nr; k++)
        for (int di = 0; di < 2 && ns + 2 <= LL_LAB_MAX_SERIES - 2; di++) {
            if (!has_backend(rs[k].model, devs[di])) continue;
            ll_lab_ceil c;
            ceil_of(&rs[k], devs[di], &c);
            snprintf(nm, sizeof nm, "%s%s%s ceiling%s", prefix(&rs[k], nr), nr > 1 ? " " : "", devs[di],
                     c.read_gbps > 0 || c.gemm_gflops > 0 ? "" : " (not measured)");
            roof(&s[ns++], nm, c.read_gbps, c.gemm_gflops);
            if (c.int8_gops > 0 && c.read_gbps > 0) { // quantized weights' prompt roof
                snprintf(nm, sizeof nm, "%s%s%s int8 ceiling (quantized weights)", prefix(&rs[k], nr), nr > 1 ? " " : "", devs[di]);
                roof(&s[ns++], nm, c.read_gbps, c.int8_gops);
            }
        }
    for (int k = 0; k < nr; k++) {
        const cJSON *m, *t;
        cJSON_ArrayForEach(m, cJSON_GetObjectItem(rs[k].model, "results")) {
            if (!cJSON_GetArraySize(cJSON_GetObjectItem(m, "tests"))) continue;
            bool shared = ns == LL_LAB_MAX_SERIES; // palette full: into the last series, with full labels
            ll_lab_series *p = shared ? &s[ns - 1] : &s[ns++];
            if (!shared) {
                memset(p, 0, sizeof *p);
                snprintf(p->name, sizeof p->name, "%s%s%.40s %s (%s)", prefix(&rs[k], nr), nr > 1 ? " " : "",
                         ll_lab_str(m, "model"), ll_lab_str(m, "type"), ll_lab_str(m, "backend"));
                if (ns == LL_LAB_MAX_SERIES) snprintf(p->name, sizeof p->name, "other models (labelled)");
            }
            cJSON_ArrayForEach(t, cJSON_GetObjectItem(m, "tests")) {
                const cJSON *rf = cJSON_GetObjectItem(t, "roofline");
                if (p->n >= LL_LAB_MAX_POINTS || !rf) continue;
                p->x[p->n] = ll_lab_num(rf, "arithmetic_intensity"), p->y[p->n] = ll_lab_num(rf, "achieved_gflops");
                if (shared || ns == LL_LAB_MAX_SERIES)
                    snprintf(p->label[p->n], sizeof p->label[0], "%.20s %s %s", ll_lab_str(m, "model"), ll_lab_str(m, "type"),
                             ll_lab_str(t, "test"));
                else snprintf(p->label[p->n], sizeof p->label[0], "%s", ll_lab_str(t, "test"));
                p->n++, pts++;
            }
        }
    }
    if (!pts) { note(h, "Roofline: no model results (model.json) to place on it."); return; }
    ll_lab_svg_xy(h, "Roofline: attained GFLOPS vs arithmetic intensity", "FLOPs per byte of weights read",
                  "GFLOPS", s, ns, true, true);
}

static void tps_and_memory(ll_lab_buf *h, const ll_lab_results *rs, int nr) {
    enum { MAXG = 32 };
    char names[MAXG][200];
    const char *groups[MAXG];
    double tps[MAXG * 2], mem[MAXG * 3];
    int ng = 0;
    for (int k = 0; k < nr; k++) {
        const cJSON *m;
        cJSON_ArrayForEach(m, cJSON_GetObjectItem(rs[k].model, "results")) {
            if (ng >= MAXG) break;
            const cJSON *mm = cJSON_GetObjectItem(m, "memory"), *t;
            snprintf(names[ng], sizeof names[0], "%s%s%.60s %s", prefix(&rs[k], nr), nr > 1 ? ": " : "", ll_lab_str(m, "model"),
                     ll_lab_str(m, "type"));
            groups[ng] = names[ng];
            tps[ng * 2] = tps[ng * 2 + 1] = NAN;
            cJSON_ArrayForEach(t, cJSON_GetObjectItem(m, "tests")) {
                int i = strncmp(ll_lab_str(t, "test"), "pp", 2) ? 1 : 0;
                if (isnan(tps[ng * 2 + i])) tps[ng * 2 + i] = ll_lab_num(cJSON_GetObjectItem(t, "ts"), "median");
            }
            mem[ng * 3] = ll_lab_num(mm, "weights_bytes") / 1048576.0;
            mem[ng * 3 + 1] = ll_lab_num(mm, "kv_bytes") / 1048576.0;
            mem[ng * 3 + 2] = ll_lab_num(mm, "activations_bytes") / 1048576.0;
            ng++;
        }
    }
    if (!ng) { note(h, "t/s by type and memory breakdown: no model results (model.json)."); return; }
    const char *ser[] = {"prompt (first pp test)", "generation (first tg test)"};
    ll_lab_svg_bars(h, "Tokens per second by model and type (median)", "tokens / s", groups, ng, ser, 2, tps, false);
    const char *ms[] = {"weights", "KV cache", "activations"};
    ll_lab_svg_bars(h, "Memory breakdown", "MiB", groups, ng, ms, 3, mem, true);
}

// One series per distinct (device, kind/dtype, impl) of a hardware file, x and y from two row fields.
static void sweep(ll_lab_buf *h, const ll_lab_results *rs, int nr, size_t field, const char *file, const char *what,
                  const char *xkey, const char *ykey, const char *title, const char *xl, const char *yl, bool logx) {
    ll_lab_series s[LL_LAB_MAX_SERIES];
    int ns = 0;
    for (int k = 0; k < nr; k++) {
        const cJSON *d = *(cJSON *const *)((const char *)&rs[k] + field), *row;
        cJSON_ArrayForEach(row, cJSON_GetObjectItem(d, "results")) {
            double x = ll_lab_num(row, xkey), y = ll_lab_num(row, ykey);
            if (!isfinite(y)) continue;
            if (!isfinite(x)) x = 1;
            char name[96], impl[40];
            snprintf(impl, sizeof impl, "%.39s", ll_lab_str(row, "impl"));
            char *cut = strchr(impl, '(');
            if (cut) *cut = 0;
            snprintf(name, sizeof name, "%s%s%s %s %s", prefix(&rs[k], nr), nr > 1 ? " " : "", ll_lab_str(row, "device"),
                     ll_lab_str(row, what), impl);
            int i = 0;
            while (i < ns && strcmp(s[i].name, name)) i++;
            if (i == ns) {
                if (ns == LL_LAB_MAX_SERIES) continue;
                memset(&s[ns], 0, sizeof s[0]);
                snprintf(s[ns].name, sizeof s[0].name, "%s", name);
                s[ns++].line = true;
            }
            if (s[i].n < LL_LAB_MAX_POINTS) s[i].x[s[i].n] = x, s[i].y[s[i].n] = y, s[i].n++;
        }
    }
    if (!ns) {
        char t[256];
        snprintf(t, sizeof t, "%s: not measured (no %s.json rows).", title, file);
        note(h, t);
        return;
    }
    ll_lab_svg_xy(h, title, xl, yl, s, ns, logx, false);
}

// Quality vs size from a sweep (quality.json): mean KLD against bits per weight, one point per type.
static void quality_chart(ll_lab_buf *h, const ll_lab_results *rs, int nr) {
    ll_lab_series s[LL_LAB_MAX_SERIES];
    int ns = 0;
    for (int k = 0; k < nr && ns < LL_LAB_MAX_SERIES; k++) {
        ll_lab_series *p = &s[ns];
        memset(p, 0, sizeof *p);
        snprintf(p->name, sizeof p->name, "%s%smean KLD vs base", prefix(&rs[k], nr), nr > 1 ? " " : "");
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItem(rs[k].quality, "sweep")) {
            const cJSON *vb = cJSON_GetObjectItem(cJSON_GetObjectItem(e, "result"), "vs_base");
            double x = ll_lab_num(e, "bits_per_weight"), y = ll_lab_num(vb, "kld_mean");
            if (!isfinite(x) || !(y > 0) || p->n >= LL_LAB_MAX_POINTS) continue;
            p->x[p->n] = x, p->y[p->n] = y;
            snprintf(p->label[p->n], sizeof p->label[0], "%s", ll_lab_str(e, "type"));
            p->n++;
        }
        if (p->n) ns++;
    }
    if (!ns) { note(h, "Quality vs size: no quality sweep (quality.json) in these results."); return; }
    ll_lab_svg_xy(h, "Quality vs size: KL divergence from the unquantized model", "bits per weight (file)",
                  "mean KLD (nats)", s, ns, false, true);
}

void ll_lab_report_charts(ll_lab_buf *h, const ll_lab_results *rs, int nr) {
    ll_lab_buf_printf(h, "<h2>Figures</h2>\n");
    roofline(h, rs, nr);
    tps_and_memory(h, rs, nr);
    quality_chart(h, rs, nr);
    sweep(h, rs, nr, offsetof(ll_lab_results, gemm), "gemm", "dtype", "m", "tflops", "GEMM sweep", "size (M = N = K)",
          "TFLOPS", true);
    sweep(h, rs, nr, offsetof(ll_lab_results, memory), "memory", "kind", "threads", "gbps", "Bandwidth sweep",
          "threads", "GB/s", false);
}
