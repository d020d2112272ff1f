// gguf_write.c — the GGUF builder (values kept in raw GGUF encoding, so gguf.c's getters read built and parsed
// files alike) and the streaming writer (header, then tensor data in pieces, into PATH.tmp.PID renamed at finish).
#include "formats/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// ---- builder-owned memory: a list of blocks whose first member is the next pointer (freed by ll_gguf_free) ---
typedef struct own_blk {
    struct own_blk *next;
    uint64_t pad;           // keeps data 16-byte aligned
    unsigned char data[];
} own_blk;

static uint8_t *own_alloc(ll_gguf *g, uint64_t n) {
    LL_ASSERT(n <= SIZE_MAX - sizeof(own_blk));
    own_blk *b = malloc(sizeof *b + (size_t)n);
    LL_ASSERT(b != NULL);
    b->next = g->owned;
    g->owned = b;
    return b->data;
}

// Release the block holding data, if g owns it (values of a parsed file live in its map instead).
static void own_release(ll_gguf *g, const uint8_t *data) {
    for (own_blk **pp = (own_blk **)&g->owned; *pp; pp = &(*pp)->next) {
        if ((*pp)->data == data) {
            own_blk *b = *pp;
            *pp = b->next;
            free(b);
            return;
        }
    }
}

static const uint8_t k_elem_size[LL_GGUF_VTYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

// Store a value (already in raw GGUF encoding), replacing an existing key of the same name.
static void kv_put(ll_gguf *g, const char *key, uint32_t type, uint32_t arr_type, uint64_t arr_n, const void *raw,
                   uint64_t nbytes) {
    LL_ASSERT(key && *key && type < LL_GGUF_VTYPE_COUNT);
    uint8_t *d = own_alloc(g, nbytes); // copied before the old value is released: raw may point into it
    if (nbytes) memcpy(d, raw, (size_t)nbytes);
    ll_gguf_kv *kv = (ll_gguf_kv *)ll_gguf_find(g, key);
    if (kv) {
        own_release(g, kv->data);
    } else {
        if (g->n_kv == g->cap_kv) {
            g->cap_kv = g->cap_kv ? g->cap_kv * 2 : 16;
            g->kv = realloc(g->kv, (size_t)g->cap_kv * sizeof *g->kv);
            LL_ASSERT(g->kv != NULL);
        }
        kv = &g->kv[g->n_kv++];
        kv->key = ll_strdup(key);
    }
    kv->type = type;
    kv->arr_type = type == LL_GGUF_ARRAY ? arr_type : 0;
    kv->arr_n = type == LL_GGUF_ARRAY ? arr_n : 0;
    kv->data = d;
    kv->nbytes = nbytes;
    if (strcmp(key, "general.alignment") == 0) {
        uint32_t a;
        LL_ASSERT(type == LL_GGUF_UINT32); // what the spec and every reader expect
        memcpy(&a, d, 4);
        LL_ASSERT(a != 0 && (a & (a - 1)) == 0);
        g->alignment = a;
        uint64_t off = 0; // re-lay the declared tensors with the new alignment
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            off = (off + a - 1) / a * a;
            g->tensors[i].offset = off;
            off += g->tensors[i].nbytes;
        }
    }
}

void ll_gguf_set_u32(ll_gguf *g, const char *key, uint32_t v) { kv_put(g, key, LL_GGUF_UINT32, 0, 0, &v, 4); }
void ll_gguf_set_i32(ll_gguf *g, const char *key, int32_t v) { kv_put(g, key, LL_GGUF_INT32, 0, 0, &v, 4); }
void ll_gguf_set_u64(ll_gguf *g, const char *key, uint64_t v) { kv_put(g, key, LL_GGUF_UINT64, 0, 0, &v, 8); }
void ll_gguf_set_f32(ll_gguf *g, const char *key, float v) { kv_put(g, key, LL_GGUF_FLOAT32, 0, 0, &v, 4); }

void ll_gguf_set_bool(ll_gguf *g, const char *key, bool v) {
    uint8_t b = v ? 1 : 0;
    kv_put(g, key, LL_GGUF_BOOL, 0, 0, &b, 1);
}

// Strings are u64 length + bytes; written in place into one new block.
void ll_gguf_set_str(ll_gguf *g, const char *key, const char *v) {
    uint64_t n = strlen(v);
    uint8_t *tmp = malloc((size_t)n + 8);
    LL_ASSERT(tmp != NULL);
    memcpy(tmp, &n, 8);
    memcpy(tmp + 8, v, (size_t)n);
    kv_put(g, key, LL_GGUF_STRING, 0, 0, tmp, n + 8);
    free(tmp);
}

void ll_gguf_set_arr(ll_gguf *g, const char *key, uint32_t elem_type, uint64_t n, const void *data) {
    LL_ASSERT(elem_type < LL_GGUF_VTYPE_COUNT && k_elem_size[elem_type] != 0); // numbers and bools only
    uint64_t bytes;
    LL_ASSERT(ll_mul_u64(n, k_elem_size[elem_type], &bytes));
    if (elem_type == LL_GGUF_BOOL)
        for (uint64_t i = 0; i < n; i++) LL_ASSERT(((const uint8_t *)data)[i] <= 1);
    kv_put(g, key, LL_GGUF_ARRAY, elem_type, n, data, bytes);
}

void ll_gguf_set_arr_str(ll_gguf *g, const char *key, uint64_t n, const ll_str *v) {
    uint64_t bytes = 0;
    for (uint64_t i = 0; i < n; i++) LL_ASSERT(ll_add_u64(bytes, 8, &bytes) && ll_add_u64(bytes, v[i].len, &bytes));
    LL_ASSERT(bytes <= SIZE_MAX);
    uint8_t *tmp = malloc(bytes ? (size_t)bytes : 1), *p = tmp;
    LL_ASSERT(tmp != NULL);
    for (uint64_t i = 0; i < n; i++) {
        memcpy(p, &v[i].len, 8);
        if (v[i].len) memcpy(p + 8, v[i].ptr, (size_t)v[i].len);
        p += 8 + v[i].len;
    }
    kv_put(g, key, LL_GGUF_ARRAY, LL_GGUF_STRING, n, tmp, bytes);
    free(tmp);
}

void ll_gguf_copy_kv(ll_gguf *g, const ll_gguf_kv *kv) {
    kv_put(g, kv->key, kv->type, kv->arr_type, kv->arr_n, kv->data, kv->nbytes);
}

// ---- tensors ------------------------------------------------------------------------------------------
ll_status ll_gguf_add_tensor(ll_gguf *g, const char *name, uint32_t type, uint32_t n_dims, const int64_t *ne,
                             const void *data, ll_error *err) {
    const ll_type_traits *tt = ll_type_get(type);
    if (!name || !*name) return ll_err_set(err, LL_ERR_ARG, "%s: a tensor needs a non-empty name", g->path);
    if (!tt) return ll_err_set(err, LL_ERR_ARG, "%s: tensor '%s' has unknown type id %" PRIu32, g->path, name, type);
    if (n_dims > LL_GGUF_MAX_DIMS)
        return ll_err_set(err, LL_ERR_ARG, "%s: tensor '%s' has %" PRIu32 " dimensions; at most %d are supported",
                          g->path, name, n_dims, LL_GGUF_MAX_DIMS);
    if (ll_gguf_find_tensor(g, name)) return ll_err_set(err, LL_ERR_ARG, "%s: duplicate tensor '%s'", g->path, name);
    ll_gguf_tensor t = {.type = type, .n_dims = n_dims, .ne = {1, 1, 1, 1}, .data = data};
    uint64_t count = 1, row;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] <= 0 || !ll_mul_u64(count, (uint64_t)ne[d], &count) || count > (uint64_t)INT64_MAX)
            return ll_err_set(err, LL_ERR_ARG, "%s: tensor '%s' dimension %" PRIu32 " is %" PRId64
                              " (dimensions must be positive and their product must fit in int64)",
                              g->path, name, d, ne[d]);
        t.ne[d] = ne[d];
    }
    if (!ll_type_row_size(type, (uint64_t)t.ne[0], &row) || !ll_mul_u64(row, count / (uint64_t)t.ne[0], &t.nbytes))
        return ll_err_set(err, LL_ERR_ARG,
                          "%s: tensor '%s' (%s): a row of %" PRId64 " elements is not a multiple of the block size %d "
                          "or the tensor is too large",
                          g->path, name, tt->name, t.ne[0], tt->blck);
    uint64_t off = 0, a = g->alignment;
    if (g->n_tensors) {
        const ll_gguf_tensor *last = &g->tensors[g->n_tensors - 1];
        if (!ll_add_u64(last->offset, last->nbytes, &off) || !ll_add_u64(off, a - 1, &off))
            return ll_err_set(err, LL_ERR_ARG, "%s: tensor '%s' does not fit: offsets overflow", g->path, name);
        off = off / a * a;
    }
    t.offset = off;
    if (g->n_tensors == g->cap_tensors) {
        g->cap_tensors = g->cap_tensors ? g->cap_tensors * 2 : 16;
        g->tensors = realloc(g->tensors, (size_t)g->cap_tensors * sizeof *g->tensors);
        LL_ASSERT(g->tensors != NULL);
    }
    t.name = ll_strdup(name);
    g->tensors[g->n_tensors++] = t;
    return LL_OK;
}

void ll_gguf_adopt_map(ll_gguf *g, ll_map *m) {
    LL_ASSERT(g->map == NULL || g->map == m); // one map per file: importers have a single source file
    g->map = m;
}

// ---- streaming writer ---------------------------------------------------------------------------------
struct ll_gguf_writer {
    FILE *f;
    char *path, *tmp; // destination and PATH.tmp.PID
    int tmp_slot;     // tmp registered for removal on a fatal signal (ll_tmp_register), or -1
    uint64_t alignment;
    uint64_t n_tensors, cur; // tensor whose bytes come next
    uint64_t *nbytes;        // declared bytes per tensor (row size * rows)
    uint64_t done;           // bytes of tensor cur written so far
    uint64_t pos;            // bytes written to the file
};

static ll_status w_put(ll_gguf_writer *w, const void *p, size_t n, ll_error *err) {
    if (n && fwrite(p, 1, n, w->f) != n)
        return ll_err_set(err, LL_ERR_IO, "%s: write failed after %" PRIu64 " bytes: %s", w->tmp, w->pos,
                          strerror(errno));
    w->pos += n;
    return LL_OK;
}
static ll_status w_u32(ll_gguf_writer *w, uint32_t v, ll_error *err) { return w_put(w, &v, 4, err); }
static ll_status w_u64(ll_gguf_writer *w, uint64_t v, ll_error *err) { return w_put(w, &v, 8, err); }
static ll_status w_str(ll_gguf_writer *w, const char *s, ll_error *err) {
    size_t n = strlen(s);
    ll_status st = w_u64(w, n, err);
    return st != LL_OK ? st : w_put(w, s, n, err);
}

// Zero bytes up to the next multiple of the alignment.
static ll_status w_pad(ll_gguf_writer *w, ll_error *err) {
    static const uint8_t zeros[256];
    uint64_t n = (w->alignment - w->pos % w->alignment) % w->alignment;
    while (n) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        ll_status st = w_put(w, zeros, k, err);
        if (st != LL_OK) return st;
        n -= k;
    }
    return LL_OK;
}

static ll_status w_kv(ll_gguf_writer *w, const ll_gguf_kv *kv, ll_error *err) {
    ll_status st = w_str(w, kv->key, err);
    if (st == LL_OK) st = w_u32(w, kv->type, err);
    if (st == LL_OK && kv->type == LL_GGUF_ARRAY) {
        st = w_u32(w, kv->arr_type, err);
        if (st == LL_OK) st = w_u64(w, kv->arr_n, err);
    }
    if (st == LL_OK) st = w_put(w, kv->data, (size_t)kv->nbytes, err);
    return st;
}

// Sizes from the type table (not trusted from the struct) and offsets laid out with meta's alignment.
static ll_status w_layout(ll_gguf_writer *w, const ll_gguf *meta, uint64_t *offsets, ll_error *err) {
    uint64_t off = 0, a = w->alignment;
    for (uint64_t i = 0; i < meta->n_tensors; i++) {
        const ll_gguf_tensor *t = &meta->tensors[i];
        uint64_t row, rows = 1;
        bool ok = ll_type_row_size(t->type, (uint64_t)t->ne[0], &row) && t->ne[0] > 0;
        for (int d = 1; d < LL_GGUF_MAX_DIMS && ok; d++) ok = t->ne[d] > 0 && ll_mul_u64(rows, (uint64_t)t->ne[d], &rows);
        ok = ok && ll_mul_u64(row, rows, &w->nbytes[i]);
        ok = ok && ll_add_u64(off, a - 1, &off);
        if (ok) off = off / a * a;
        uint64_t end;
        if (!ok || !ll_add_u64(off, w->nbytes[i], &end))
            return ll_err_set(err, LL_ERR_ARG, "%s: tensor '%s' has an invalid type or shape, or is too large",
                              meta->path, t->name);
        offsets[i] = off;
        off = end;
    }
    return LL_OK;
}

static void w_free(ll_gguf_writer *w) {
    ll_tmp_unregister(w->tmp_slot);
    free(w->nbytes);
    free(w->path);
    free(w->tmp);
    free(w);
}

void ll_gguf_writer_abort(ll_gguf_writer *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    unlink(w->tmp);
    w_free(w);
}

// Header, KVs (plus general.alignment when meta's alignment is not the default and no key says so), tensor
// infos, padding up to the data section.
static ll_status w_header(ll_gguf_writer *w, const ll_gguf *meta, const uint64_t *offsets, ll_error *err) {
    bool add_align = meta->alignment != LL_GGUF_DEFAULT_ALIGNMENT && !ll_gguf_find(meta, "general.alignment");
    ll_status st = w_put(w, "GGUF", 4, err);
    if (st == LL_OK) st = w_u32(w, 3, err);
    if (st == LL_OK) st = w_u64(w, meta->n_tensors, err);
    if (st == LL_OK) st = w_u64(w, meta->n_kv + add_align, err);
    for (uint64_t i = 0; i < meta->n_kv && st == LL_OK; i++) st = w_kv(w, &meta->kv[i], err);
    if (add_align && st == LL_OK) {
        uint32_t a = (uint32_t)meta->alignment;
        ll_gguf_kv kv = {.key = "general.alignment", .type = LL_GGUF_UINT32, .data = (const uint8_t *)&a, .nbytes = 4};
        st = w_kv(w, &kv, err);
    }
    for (uint64_t i = 0; i < meta->n_tensors && st == LL_OK; i++) {
        const ll_gguf_tensor *t = &meta->tensors[i];
        st = w_str(w, t->name, err);
        if (st == LL_OK) st = w_u32(w, t->n_dims, err);
        for (uint32_t d = 0; d < t->n_dims && st == LL_OK; d++) st = w_u64(w, (uint64_t)t->ne[d], err);
        if (st == LL_OK) st = w_u32(w, t->type, err);
        if (st == LL_OK) st = w_u64(w, offsets[i], err);
    }
    if (st == LL_OK) st = w_pad(w, err);
    return st;
}

ll_status ll_gguf_writer_open(ll_gguf_writer **out, const char *path, const ll_gguf *meta, ll_error *err) {
    *out = NULL;
    uint64_t a = meta->alignment;
    if (a == 0 || (a & (a - 1)) != 0 || a > UINT32_MAX)
        return ll_err_set(err, LL_ERR_ARG, "%s: alignment %" PRIu64 " is not a power of two", meta->path, a);
    ll_gguf_writer *w = calloc(1, sizeof *w);
    uint64_t *offsets = ll_calloc((size_t)meta->n_tensors, sizeof *offsets, err);
    if (w) w->nbytes = ll_calloc((size_t)meta->n_tensors, sizeof *w->nbytes, err);
    if (!w || !offsets || !w->nbytes) {
        free(offsets);
        if (w) free(w->nbytes);
        free(w);
        return ll_err_set(err, LL_ERR_NOMEM, "%s: out of memory opening the writer", path);
    }
    w->alignment = a;
    w->n_tensors = meta->n_tensors;
    w->path = ll_strdup(path);
    size_t cap = strlen(path) + 32;
    w->tmp = malloc(cap);
    LL_ASSERT(w->tmp != NULL);
    snprintf(w->tmp, cap, "%s.tmp.%ld", path, (long)getpid());
    w->tmp_slot = -1;
    ll_tmp_sweep_stale(path);
    ll_status st = w_layout(w, meta, offsets, err);
    if (st != LL_OK) {
        free(offsets);
        w_free(w);
        return st;
    }
    w->tmp_slot = ll_tmp_register(w->tmp); // before the file exists: a signal in between finds nothing to remove
    int fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || !(w->f = fdopen(fd, "wb"))) {
        st = ll_err_set(err, LL_ERR_IO, "%s: cannot create %s: %s", path, w->tmp, strerror(errno));
        if (fd >= 0) close(fd), unlink(w->tmp);
        free(offsets);
        w_free(w);
        return st;
    }
    setvbuf(w->f, NULL, _IOFBF, 1 << 20);
    st = w_header(w, meta, offsets, err);
    free(offsets);
    if (st != LL_OK) {
        ll_gguf_writer_abort(w);
        return st;
    }
    *out = w;
    return LL_OK;
}

// On failure w stays valid and the caller calls ll_gguf_writer_abort.
ll_status ll_gguf_writer_write(ll_gguf_writer *w, const void *data, size_t n, ll_error *err) {
    const uint8_t *p = data;
    while (n > 0) {
        if (w->cur >= w->n_tensors)
            return ll_err_set(err, LL_ERR_ARG, "%s: %zu bytes written beyond the %" PRIu64 " declared tensors",
                              w->path, n, w->n_tensors);
        uint64_t want = w->nbytes[w->cur] - w->done;
        size_t k = n < want ? n : (size_t)want;
        ll_status st = w_put(w, p, k, err);
        if (st != LL_OK) return st;
        p += k;
        n -= k;
        w->done += k;
        if (w->done == w->nbytes[w->cur]) {
            w->cur++;
            w->done = 0;
            if ((st = w_pad(w, err)) != LL_OK) return st;
        }
    }
    return LL_OK;
}

// Always consumes w; on failure the temporary file is removed and PATH is left as it was.
ll_status ll_gguf_writer_finish(ll_gguf_writer *w, ll_error *err) {
    ll_status st = LL_OK;
    if (w->cur != w->n_tensors) {
        st = ll_err_set(err, LL_ERR_ARG,
                        "%s: only %" PRIu64 " of %" PRIu64 " tensors were written (tensor %" PRIu64
                        " is missing %" PRIu64 " bytes); the file was not created",
                        w->path, w->cur, w->n_tensors, w->cur, w->nbytes[w->cur] - w->done);
    } else if (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0) {
        st = ll_err_set(err, LL_ERR_IO, "%s: cannot flush %s to disk: %s", w->path, w->tmp, strerror(errno));
    }
    if (st != LL_OK) {
        ll_gguf_writer_abort(w);
        return st;
    }
    FILE *f = w->f;
    w->f = NULL;
    if (fclose(f) != 0 || rename(w->tmp, w->path) != 0) {
        st = ll_err_set(err, LL_ERR_IO, "%s: cannot move %s into place: %s", w->path, w->tmp, strerror(errno));
        ll_gguf_writer_abort(w);
        return st;
    }
    // Make the rename itself durable (best effort: some file systems refuse fsync on directories).
    char *dir = ll_strdup(w->path), *slash = strrchr(dir, '/');
    if (slash) *(slash == dir ? slash + 1 : slash) = 0;
    int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) fsync(dfd), close(dfd);
    free(dir);
    w_free(w);
    return LL_OK;
}

ll_status ll_gguf_write_file(const ll_gguf *g, const char *path, ll_error *err) {
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (!g->tensors[i].data)
            return ll_err_set(err, LL_ERR_ARG, "%s: tensor '%s' has no data to write", path, g->tensors[i].name);
    ll_gguf_writer *w;
    ll_status st = ll_gguf_writer_open(&w, path, g, err);
    for (uint64_t i = 0; i < g->n_tensors && st == LL_OK; i++) {
        st = ll_gguf_writer_write(w, g->tensors[i].data, (size_t)w->nbytes[i], err);
        if (st != LL_OK) ll_gguf_writer_abort(w);
    }
    return st == LL_OK ? ll_gguf_writer_finish(w, err) : st;
}
