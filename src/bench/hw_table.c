// hw_table.c — the readable table `bench hw` prints at the end, made from the JSON documents alone (what the
// files say is what the table says).
#include "bench/hw_internal.h"

#include <string.h>

static const char *str(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static void fmt_rate(char *b, size_t cap, const char *schema, const cJSON *r) {
    if (strstr(schema, "gemm") || strstr(schema, "attention")) {
        double t = num(r, "tflops");
        bool ops = !strcmp(str(r, "dtype"), "int8");
        if (t >= 1) snprintf(b, cap, "%.1f %s", t, ops ? "TOPS" : "TFLOPS");
        else snprintf(b, cap, "%.1f %s", t * 1e3, ops ? "GOPS" : "GFLOPS");
    } else if (strstr(schema, "launch")) {
        snprintf(b, cap, "%.2f us", num(r, "us_per_op"));
    } else {
        snprintf(b, cap, "%.1f GB/s", num(r, "gbps"));
    }
}

static void fmt_size(char *b, size_t cap, const char *schema, const cJSON *r) {
    if (strstr(schema, "gemm")) {
        double m = num(r, "m"), n = num(r, "n"), k = num(r, "k");
        if (m == n && n == k) snprintf(b, cap, "%.0f^3", m);
        else snprintf(b, cap, "%.0fx%.0fx%.0f", m, n, k);
    } else if (strstr(schema, "attention")) {
        snprintf(b, cap, "seq %.0f hd %.0f h %.0f", num(r, "seq"), num(r, "head_dim"), num(r, "heads"));
    } else if (strstr(schema, "memory")) {
        if (num(r, "threads") > 0) snprintf(b, cap, "%.0f MiB %.0fT", num(r, "array_bytes") / 1048576, num(r, "threads"));
        else snprintf(b, cap, "%.0f MiB", num(r, "array_bytes") / 1048576);
    } else if (strstr(schema, "transfer")) {
        snprintf(b, cap, "%.0f MiB", num(r, "bytes") / 1048576);
    } else {
        snprintf(b, cap, "x%.0f", num(r, "ops_per_rep"));
    }
}

static void print_rows(FILE *f, const char *schema, const cJSON *results) {
    fprintf(f, "  %-8s %-13s %-9s %-18s %14s %7s %7s %-5s %s\n", "device", "kind", "dtype", "size", "rate", "spread",
            "%spec", "check", "impl");
    const cJSON *r;
    cJSON_ArrayForEach(r, results) {
        char size[48], rate[32] = "-", spread[16] = "-", pct[16] = "-";
        fmt_size(size, sizeof size, schema, r);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, "validated");
        const char *check = cJSON_IsTrue(v) ? "ok" : cJSON_IsFalse(v) ? "FAIL" : "-";
        const char *skipped = str(r, "skipped");
        if (!*skipped) {
            fmt_rate(rate, sizeof rate, schema, r);
            snprintf(spread, sizeof spread, "%.1f%%", num(r, "spread_pct"));
            if (num(r, "pct_of_spec") >= 0) snprintf(pct, sizeof pct, "%.0f%%", num(r, "pct_of_spec"));
        }
        fprintf(f, "  %-8s %-13s %-9s %-18s %14s %7s %7s %-5s %.60s\n", str(r, "device"), str(r, "kind"),
                str(r, "dtype"), size, *skipped ? "skipped" : rate, spread, pct, check, *skipped ? skipped : str(r, "impl"));
    }
}

static void print_alloc(FILE *f, const cJSON *results) {
    const cJSON *r;
    cJSON_ArrayForEach(r, results) {
        fprintf(f, "  %-8s largest allocation %.2f GiB (bound %.2f GiB: %s; limited by %s; %.0f probes, %.1f s)\n",
                str(r, "device"), num(r, "largest_ok_bytes") / 1073741824.0, num(r, "bound_bytes") / 1073741824.0,
                str(r, "bound_rule"), str(r, "limited_by"), num(r, "probes"), num(r, "seconds"));
    }
}

static void print_ceilings(FILE *f, const cJSON *results) {
    const cJSON *r;
    cJSON_ArrayForEach(r, results)
        fprintf(f, "  %-8s %-15s %10.1f %-7s %-9s %.70s\n", str(r, "device"), str(r, "kind"), num(r, "value"),
                str(r, "unit"), str(r, "source"), str(r, "how"));
}

void ll_hw_table_print(FILE *f, cJSON *const *docs, int n_docs) {
    for (int i = 0; i < n_docs; i++) {
        const char *schema = str(docs[i], "schema");
        if (strstr(schema, "system_info")) {
            const cJSON *m = cJSON_GetObjectItemCaseSensitive(docs[i], "machine");
            fprintf(f, "\n== ceilings: %s, %s, %.0f/%.0f cores, %.1f GiB (mode %s)\n", str(m, "hostname"),
                    str(m, "cpu_model"), num(m, "physical_cores"), num(m, "logical_cores"),
                    num(m, "mem_total_bytes") / 1073741824.0, str(m, "mode"));
            print_ceilings(f, ll_hw_results(docs[i]));
        } else {
            fprintf(f, "\n== %s\n", schema);
            if (strstr(schema, "alloc")) print_alloc(f, ll_hw_results(docs[i]));
            else print_rows(f, schema, ll_hw_results(docs[i]));
        }
        const cJSON *n;
        cJSON_ArrayForEach(n, cJSON_GetObjectItemCaseSensitive(docs[i], "notes"))
            if (cJSON_IsString(n)) fprintf(f, "  note: %s\n", n->valuestring);
    }
}
