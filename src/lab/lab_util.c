// lab_util.c — the model lab's small shared pieces: the default results folder, reading and atomically
// writing JSON documents, and typed lookups that tolerate absent fields.
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lab/lab.h"

void ll_lab_default_dir(char *buf, size_t cap) {
    char host[128] = "localhost";
    if (gethostname(host, sizeof host) != 0 || !host[0]) snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = 0;
    snprintf(buf, cap, "results/raw/%s", host);
}

cJSON *ll_lab_json_read(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 65536 > cap) {
            cap = cap ? cap * 2 : 1 << 17;
            char *nb = realloc(buf, cap + 1);
            if (!nb) { free(buf); fclose(f); return NULL; }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0) break;
        if (len > (64u << 20)) break; // results documents are small; refuse to slurp anything huge
    }
    fclose(f);
    if (!buf) return NULL;
    buf[len] = 0;
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    return j;
}

static ll_status mkdir_p(const char *dir, ll_error *err) {
    char p[4096];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) return ll_err_set(err, LL_ERR_ARG, "path too long: %s", dir);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0777) != 0 && errno != EEXIST) return ll_err_set(err, LL_ERR_IO, "cannot create %s: %s", p, strerror(errno));
        *s = '/';
    }
    if (mkdir(p, 0777) != 0 && errno != EEXIST) return ll_err_set(err, LL_ERR_IO, "cannot create %s: %s", p, strerror(errno));
    return LL_OK;
}

// DIR/.NAME.tmp.PID written completely and fsynced; on failure removed.
static ll_status write_tmp(const char *tmp, const char *dst, const char *text, ll_error *err) {
    FILE *f = fopen(tmp, "wb");
    if (!f) return ll_err_set(err, LL_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    size_t len = strlen(text);
    bool ok = fwrite(text, 1, len, f) == len;
    ok = fflush(f) == 0 && ok;
    ok = fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (!ok) {
        int e = errno;
        unlink(tmp);
        return ll_err_set(err, LL_ERR_IO, "cannot write %s: %s (disk full?)", dst, strerror(e));
    }
    return LL_OK;
}

ll_status ll_lab_write_texts(const char *dir, int n, const char *const *names, const char *const *texts, ll_error *err) {
    LL_ASSERT(n >= 1 && n <= 8);
    ll_status st = mkdir_p(dir, err);
    if (st != LL_OK) return st;
    char tmp[8][4300], dst[8][4300];
    for (int i = 0; i < n; i++) {
        snprintf(tmp[i], sizeof tmp[i], "%s/.%s.tmp.%ld", dir, names[i], (long)getpid());
        snprintf(dst[i], sizeof dst[i], "%s/%s", dir, names[i]);
        if ((st = write_tmp(tmp[i], dst[i], texts[i], err)) != LL_OK) { // (it removed its own temporary file)
            for (int k = 0; k < i; k++) unlink(tmp[k]); // all or none: the files there stay consistent
            return st;
        }
    }
    for (int i = 0; i < n; i++)
        if (rename(tmp[i], dst[i]) != 0) {
            st = ll_err_set(err, LL_ERR_IO, "cannot move %s into place: %s", dst[i], strerror(errno));
            for (int k = i; k < n; k++) unlink(tmp[k]);
            break;
        }
    return st;
}

// DIR/NAME (NAME carries its extension) through DIR/.NAME.tmp.PID + fsync + rename: readers never see half a file.
static ll_status write_text(const char *dir, const char *name, const char *text, ll_error *err) {
    return ll_lab_write_texts(dir, 1, &name, &text, err);
}

ll_status ll_lab_write_text(const char *dir, const char *name, const char *text, ll_error *err) {
    return write_text(dir, name, text, err);
}

ll_status ll_lab_json_write(const char *dir, const char *name, const cJSON *doc, ll_error *err) {
    char *text = cJSON_Print(doc);
    if (!text) return ll_err_set(err, LL_ERR_NOMEM, "out of memory formatting %s/%s.json", dir, name);
    size_t n = strlen(text);
    char *t2 = realloc(text, n + 2);
    if (!t2) { free(text); return ll_err_set(err, LL_ERR_NOMEM, "out of memory"); }
    t2[n] = '\n', t2[n + 1] = 0;
    char fname[512];
    snprintf(fname, sizeof fname, "%s.json", name);
    ll_status st = write_text(dir, fname, t2, err);
    free(t2);
    return st;
}

ll_status ll_lab_json_write_file(const char *path, const cJSON *doc, ll_error *err) {
    const char *slash = strrchr(path, '/'), *name = slash ? slash + 1 : path;
    char dir[4096];
    if (!*name) return ll_err_set(err, LL_ERR_ARG, "%s: a file name is needed, not a folder", path);
    if (snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? (slash == path ? "/" : path) : ".") >=
        (int)sizeof dir)
        return ll_err_set(err, LL_ERR_ARG, "path too long: %s", path);
    char *text = cJSON_Print(doc);
    if (!text) return ll_err_set(err, LL_ERR_NOMEM, "out of memory formatting %s", path);
    size_t n = strlen(text);
    char *t2 = realloc(text, n + 2);
    if (!t2) { free(text); return ll_err_set(err, LL_ERR_NOMEM, "out of memory"); }
    t2[n] = '\n', t2[n + 1] = 0;
    ll_status st = write_text(dir, name, t2, err);
    free(t2);
    return st;
}

double ll_lab_num(const cJSON *o, const char *key) {
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

const char *ll_lab_str(const cJSON *o, const char *key) {
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : "";
}
