// report_svg.c — the charts of report.html as inline SVG (no scripts, no network): an x/y plot with optional
// log axes (roofline, sweeps) and horizontal grouped or stacked bars (t/s by type, memory breakdown).
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "lab/report_internal.h"

void ll_lab_buf_printf(ll_lab_buf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (b->s && b->len + (size_t)n < b->cap) { b->len += (size_t)n; return; }
        size_t cap = (b->cap ? b->cap * 2 : 1 << 16) + (size_t)n;
        char *s = realloc(b->s, cap);
        if (!s) { b->oom = true; return; }
        b->s = s, b->cap = cap;
    }
}

void ll_lab_buf_html(ll_lab_buf *b, const char *t) {
    for (; *t; t++) {
        if (*t == '<') ll_lab_buf_printf(b, "&lt;");
        else if (*t == '>') ll_lab_buf_printf(b, "&gt;");
        else if (*t == '&') ll_lab_buf_printf(b, "&amp;");
        else if (*t == '"') ll_lab_buf_printf(b, "&quot;");
        else ll_lab_buf_printf(b, "%c", *t);
    }
}

void ll_lab_buf_md(ll_lab_buf *b, const char *t, bool cell) {
    for (; *t; t++) {
        if (*t == '<') ll_lab_buf_printf(b, "&lt;");
        else if (*t == '>') ll_lab_buf_printf(b, "&gt;");
        else if (*t == '&') ll_lab_buf_printf(b, "&amp;");
        else if (*t == '|' && cell) ll_lab_buf_printf(b, "\\|");
        else if ((unsigned char)*t < 0x20 && cell) ll_lab_buf_printf(b, " "); // a newline would end the row
        else ll_lab_buf_printf(b, "%c", *t);
    }
}

static const char *k_colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                                 "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939"};

static void fmt_tick(char *b, size_t cap, double v) {
    double a = fabs(v);
    if (a >= 1e6 || (a > 0 && a < 1e-4)) snprintf(b, cap, "%.0e", v);
    else if (a < 1) snprintf(b, cap, "%g", v);
    else if (a >= 100 || a == floor(a)) snprintf(b, cap, "%.0f", v);
    else snprintf(b, cap, "%.2g", v);
}

enum { W = 960, H = 420, L = 70, R = 330, T = 36, B = 50 };

static double map(double v, double lo, double hi, bool lg, double p0, double p1) {
    if (lg) v = log10(v), lo = log10(lo), hi = log10(hi);
    return p0 + (v - lo) / (hi - lo) * (p1 - p0);
}

// A round tick step near raw: 1, 2, 2.5 or 5 times a power of ten.
static double nice_step(double raw) {
    if (!(raw > 0)) return 1;
    double mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * mag;
}

// Linear: from 0 (or below) to a multiple of a round step, about 5 ticks; *step returned. Log: whole decades,
// widened so data spanning less than a decade (one GEMM size) sits inside the frame, not on its edge.
static void axis_range(const ll_lab_series *s, int ns, bool xaxis, bool lg, double *lo, double *hi, double *step) {
    *lo = INFINITY, *hi = -INFINITY;
    bool ints = true; // counts (threads): no fractional ticks
    for (int i = 0; i < ns; i++)
        for (int k = 0; k < s[i].n; k++) {
            double v = xaxis ? s[i].x[k] : s[i].y[k];
            if (!isfinite(v) || (lg && v <= 0)) continue;
            ints &= v == floor(v);
            *lo = v < *lo ? v : *lo, *hi = v > *hi ? v : *hi;
        }
    if (!isfinite(*lo)) *lo = lg ? 1 : 0, *hi = lg ? 10 : 1;
    *step = 1;
    if (lg) {
        if (*hi / *lo < 10) *lo /= 2, *hi *= 2;
        *lo = pow(10, floor(log10(*lo))), *hi = pow(10, ceil(log10(*hi)));
        if (*hi <= *lo) *hi = *lo * 10;
        return;
    }
    if (*lo > 0) *lo = 0;
    if (*hi <= *lo) *hi = *lo + 1;
    *step = nice_step((*hi - *lo) / 5);
    if (ints && *step < 1) *step = 1;
    *lo = floor(*lo / *step) * *step;
    *hi = ceil(*hi * 1.02 / *step) * *step; // a little headroom above the highest point
}

static void ticks(ll_lab_buf *b, double lo, double hi, double step, bool lg, bool xaxis) {
    int n = lg ? (int)round(log10(hi / lo)) : (int)round((hi - lo) / step);
    for (int i = 0; i <= n; i++) {
        double v = lg ? lo * pow(10, i) : lo + step * i;
        char t[32];
        fmt_tick(t, sizeof t, v);
        if (xaxis) {
            double x = map(v, lo, hi, lg, L, W - R);
            ll_lab_buf_printf(b, "<line x1='%.1f' y1='%d' x2='%.1f' y2='%d' stroke='#ddd'/><text x='%.1f' y='%d' "
                              "font-size='11' text-anchor='middle'>%s</text>\n", x, T, x, H - B, x, H - B + 16, t);
        } else {
            double y = map(v, lo, hi, lg, H - B, T);
            ll_lab_buf_printf(b, "<line x1='%d' y1='%.1f' x2='%d' y2='%.1f' stroke='#ddd'/><text x='%d' y='%.1f' "
                              "font-size='11' text-anchor='end'>%s</text>\n", L, y, W - R, y, L - 6, y + 4, t);
        }
    }
}

static void frame(ll_lab_buf *b, const char *title, const char *xlab, const char *ylab) {
    ll_lab_buf_printf(b, "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' viewBox='0 0 %d %d' "
                      "font-family='sans-serif'>\n<rect width='%d' height='%d' fill='white'/>\n", W, H, W, H, W, H);
    ll_lab_buf_printf(b, "<text x='%d' y='22' font-size='15' font-weight='bold'>", L);
    ll_lab_buf_html(b, title);
    ll_lab_buf_printf(b, "</text>\n<text x='%d' y='%d' font-size='12' text-anchor='middle'>", (L + W - R) / 2, H - 12);
    ll_lab_buf_html(b, xlab);
    ll_lab_buf_printf(b, "</text>\n<text x='16' y='%d' font-size='12' text-anchor='middle' transform='rotate(-90 16 %d)'>",
                      (T + H - B) / 2, (T + H - B) / 2);
    ll_lab_buf_html(b, ylab);
    ll_lab_buf_printf(b, "</text>\n");
}

static void legend(ll_lab_buf *b, int i, const char *name) {
    int y = T + 8 + i * 18;
    ll_lab_buf_printf(b, "<rect x='%d' y='%d' width='12' height='12' fill='%s'/><text x='%d' y='%d' font-size='11'>",
                      W - R + 12, y, k_colors[i % 12], W - R + 28, y + 10);
    ll_lab_buf_html(b, name);
    ll_lab_buf_printf(b, "</text>\n");
}

// Point labels placed without overlapping each other: the first of a few spots around the point (right above,
// right below, further up/down, then left) that is free and inside the frame; else the first spot.
typedef struct label_box {
    double x0, y0, x1, y1;
} label_box;

static bool box_free(const label_box *placed, int n, label_box c) {
    if (c.x0 < L || c.x1 > W - R || c.y0 < T || c.y1 > H - B) return false;
    for (int i = 0; i < n; i++)
        if (c.x0 < placed[i].x1 && placed[i].x0 < c.x1 && c.y0 < placed[i].y1 && placed[i].y0 < c.y1) return false;
    return true;
}

static void place_label(ll_lab_buf *b, label_box *placed, int *n, int cap, double px, double py, const char *text,
                        const char *color) {
    double w = 5.6 * (double)strlen(text), h = 11; // font-size 10 sans-serif: ~5.6 px per character
    static const double off[][2] = {{7, -6}, {7, 14}, {7, -18}, {7, 26}, {7, -30}, {-1, -6}, {-1, 14}, {-1, -18}, {-1, 26}};
    int pick = 0;
    for (int i = 0; i < (int)(sizeof off / sizeof off[0]); i++) {
        double x = off[i][0] < 0 ? px - 6 - w : px + off[i][0], y = py + off[i][1]; // y: text baseline
        if (box_free(placed, *n, (label_box){x, y - h + 2, x + w, y + 2})) { pick = i; break; }
    }
    double x = off[pick][0] < 0 ? px - 6 - w : px + off[pick][0], y = py + off[pick][1];
    if (*n < cap) placed[(*n)++] = (label_box){x, y - h + 2, x + w, y + 2};
    ll_lab_buf_printf(b, "<text x='%.1f' y='%.1f' font-size='10' fill='%s'>", x, y, color); // the point's colour
    ll_lab_buf_html(b, text);
    ll_lab_buf_printf(b, "</text>");
}

void ll_lab_svg_xy(ll_lab_buf *b, const char *title, const char *xlab, const char *ylab, const ll_lab_series *s, int ns,
                   bool logx, bool logy) {
    label_box placed[256];
    int n_placed = 0;
    double x0, x1, y0, y1, xs, ys;
    axis_range(s, ns, true, logx, &x0, &x1, &xs);
    axis_range(s, ns, false, logy, &y0, &y1, &ys);
    frame(b, title, xlab, ylab);
    ticks(b, x0, x1, xs, logx, true);
    ticks(b, y0, y1, ys, logy, false);
    ll_lab_buf_printf(b, "<rect x='%d' y='%d' width='%d' height='%d' fill='none' stroke='#444'/>\n", L, T, W - R - L, H - B - T);
    for (int i = 0; i < ns; i++) {
        const char *c = k_colors[i % 12];
        if (s[i].line && s[i].n > 1) {
            ll_lab_buf_printf(b, "<polyline fill='none' stroke='%s' stroke-width='2' points='", c);
            for (int k = 0; k < s[i].n; k++)
                if (isfinite(s[i].x[k]) && isfinite(s[i].y[k]) && (!logx || s[i].x[k] > 0) && (!logy || s[i].y[k] > 0))
                    ll_lab_buf_printf(b, "%.1f,%.1f ", map(s[i].x[k], x0, x1, logx, L, W - R), map(s[i].y[k], y0, y1, logy, H - B, T));
            ll_lab_buf_printf(b, "'/>\n");
        }
        for (int k = 0; k < s[i].n; k++) {
            if (!isfinite(s[i].x[k]) || !isfinite(s[i].y[k]) || (logx && s[i].x[k] <= 0) || (logy && s[i].y[k] <= 0)) continue;
            double px = map(s[i].x[k], x0, x1, logx, L, W - R), py = map(s[i].y[k], y0, y1, logy, H - B, T);
            if (s[i].line && s[i].n > 12) continue; // a dense line (a ceiling) needs no markers
            ll_lab_buf_printf(b, "<circle cx='%.1f' cy='%.1f' r='%d' fill='%s'/>\n", px, py, s[i].line && s[i].n > 1 ? 3 : 5, c);
            if (n_placed < 256) placed[n_placed++] = (label_box){px - 5, py - 5, px + 5, py + 5}; // labels avoid markers
        }
        legend(b, i, s[i].name);
    }
    for (int i = 0; i < ns; i++) // labels last, around every marker already drawn
        for (int k = 0; k < s[i].n; k++) {
            if (!s[i].label[k][0] || (s[i].line && s[i].n > 12)) continue;
            if (!isfinite(s[i].x[k]) || !isfinite(s[i].y[k]) || (logx && s[i].x[k] <= 0) || (logy && s[i].y[k] <= 0)) continue;
            double px = map(s[i].x[k], x0, x1, logx, L, W - R), py = map(s[i].y[k], y0, y1, logy, H - B, T);
            place_label(b, placed, &n_placed, 256, px, py, s[i].label[k], k_colors[i % 12]);
            ll_lab_buf_printf(b, "\n");
        }
    ll_lab_buf_printf(b, "</svg>\n");
}

void ll_lab_svg_bars(ll_lab_buf *b, const char *title, const char *unit, const char *const *groups, int ng,
                     const char *const *series, int ns, const double *v, bool stacked) {
    double hi = 0;
    for (int g = 0; g < ng; g++) {
        double sum = 0;
        for (int s = 0; s < ns; s++) {
            double x = v[g * ns + s];
            if (!isfinite(x)) continue;
            sum += x;
            if (!stacked && x > hi) hi = x;
        }
        if (stacked && sum > hi) hi = sum;
    }
    if (hi <= 0) hi = 1;
    double step = nice_step(hi * 1.08 / 4);
    int n_ticks = (int)ceil(hi * 1.08 / step);
    hi = step * n_ticks;
    int lw = 230, bar = stacked ? 18 : 12, gap = 10, gh = (stacked ? bar : bar * ns) + gap;
    int h = T + ng * gh + B, w = W;
    if (h < T + 8 + ns * 18 + 8) h = T + 8 + ns * 18 + 8; // room for the legend when there are few groups
    ll_lab_buf_printf(b, "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' viewBox='0 0 %d %d' "
                      "font-family='sans-serif'>\n<rect width='%d' height='%d' fill='white'/>\n", w, h, w, h, w, h);
    ll_lab_buf_printf(b, "<text x='10' y='22' font-size='15' font-weight='bold'>");
    ll_lab_buf_html(b, title);
    ll_lab_buf_printf(b, "</text>\n");
    double x0 = lw, x1 = W - R;
    for (int i = 0; i <= n_ticks; i++) {
        double val = step * i, x = x0 + (x1 - x0) * i / n_ticks;
        char t[32];
        fmt_tick(t, sizeof t, val);
        ll_lab_buf_printf(b, "<line x1='%.1f' y1='%d' x2='%.1f' y2='%d' stroke='#ddd'/><text x='%.1f' y='%d' font-size='11' "
                          "text-anchor='middle'>%s</text>\n", x, T, x, h - B, x, h - B + 16, t);
    }
    ll_lab_buf_printf(b, "<text x='%.0f' y='%d' font-size='12' text-anchor='middle'>", (x0 + x1) / 2, h - 12);
    ll_lab_buf_html(b, unit);
    ll_lab_buf_printf(b, "</text>\n");
    for (int g = 0; g < ng; g++) {
        int y = T + g * gh;
        ll_lab_buf_printf(b, "<text x='%d' y='%d' font-size='11' text-anchor='end'>", lw - 6, y + (gh - gap) / 2 + 4);
        ll_lab_buf_html(b, groups[g]);
        ll_lab_buf_printf(b, "</text>\n");
        double acc = 0;
        for (int s = 0; s < ns; s++) {
            double x = v[g * ns + s];
            if (!isfinite(x) || x < 0) continue;
            double bx = stacked ? x0 + (x1 - x0) * acc / hi : x0, bw = (x1 - x0) * x / hi;
            int by = stacked ? y : y + s * bar;
            ll_lab_buf_printf(b, "<rect x='%.1f' y='%d' width='%.1f' height='%d' fill='%s'><title>%.4g</title></rect>\n", bx,
                              by, bw > 0.5 ? bw : 0.5, bar - 2, k_colors[s % 12], x);
            if (!stacked) {
                char t[32];
                fmt_tick(t, sizeof t, x);
                ll_lab_buf_printf(b, "<text x='%.1f' y='%d' font-size='10'>%s</text>\n", bx + bw + 4, by + bar - 4, t);
            }
            acc += x;
        }
    }
    for (int s = 0; s < ns; s++) {
        int y = T + 8 + s * 18;
        ll_lab_buf_printf(b, "<rect x='%d' y='%d' width='12' height='12' fill='%s'/><text x='%d' y='%d' font-size='11'>",
                          W - R + 12, y, k_colors[s % 12], W - R + 28, y + 10);
        ll_lab_buf_html(b, series[s]);
        ll_lab_buf_printf(b, "</text>\n");
    }
    ll_lab_buf_printf(b, "</svg>\n");
}
