// report_internal.h — private to the report writer: a growable text buffer, the loaded results of one folder,
// and the SVG chart helpers report.html draws with.
#ifndef LL_LAB_REPORT_INTERNAL_H
#define LL_LAB_REPORT_INTERNAL_H

#include "lab/lab.h"

typedef struct ll_lab_buf {
    char *s;
    size_t len, cap;
    bool oom;
} ll_lab_buf;
void ll_lab_buf_printf(ll_lab_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ll_lab_buf_html(ll_lab_buf *b, const char *text); // escaped
// Markdown text from results JSON: raw HTML (<script>) shown as text (&lt; &gt; &amp;); in a table cell also
// '|' as \| and control characters as spaces. Markdown markup the report writes itself (`code`) passes.
void ll_lab_buf_md(ll_lab_buf *b, const char *text, bool cell);

// One results folder: every document that was there (NULL when absent).
typedef struct ll_lab_results {
    const char *dir;
    cJSON *sys, *gemm, *memory, *attention, *alloc, *transfer, *launch, *model, *quality, *run;
} ll_lab_results;

// ---- charts (report_svg.c) -----------------------------------------------------------------------------
#define LL_LAB_MAX_SERIES 12
#define LL_LAB_MAX_POINTS 64
typedef struct ll_lab_series {
    char name[96];
    double x[LL_LAB_MAX_POINTS], y[LL_LAB_MAX_POINTS];
    char label[LL_LAB_MAX_POINTS][48];
    int n;
    bool line; // points joined by a line (else markers only)
} ll_lab_series;

// x/y chart, log axes when asked; ceiling lines are ordinary series with line = true.
void ll_lab_svg_xy(ll_lab_buf *b, const char *title, const char *xlab, const char *ylab, const ll_lab_series *s, int ns,
                   bool logx, bool logy);
// Horizontal grouped bars: groups x series, values v[g * ns + s] (NaN: absent).
void ll_lab_svg_bars(ll_lab_buf *b, const char *title, const char *unit, const char *const *groups, int ng,
                     const char *const *series, int ns, const double *v, bool stacked);



// The charts of report.html (report_charts.c); absent data is stated in a paragraph instead of a chart.
void ll_lab_report_charts(ll_lab_buf *html, const ll_lab_results *rs, int nr);
#endif
