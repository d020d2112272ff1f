// gguf.c — the GGUF v2/v3 reader: parses and validates a whole header over a read-only map (or a caller's
// buffer) before returning, then typed getters over the raw KV encodings, lookups and the object lifecycle.
#include "formats/gguf.h"

#include <float.h>
#include <math.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Values and tensors are used in place (memcpy of little-endian bytes), so the host must be little-endian.
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "llmlab reads GGUF values and tensor data in place and needs a little-endian host"
#endif

static const char *const k_vtype_names[LL_GGUF_VTYPE_COUNT] = {
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
    "bool", "string", "array", "uint64", "int64", "float64",
};
// Bytes of one value of a fixed-size type; 0 for string and array (variable length).
static const uint8_t k_vtype_size[LL_GGUF_VTYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

// Smallest encodings, for refusing counts that cannot fit in what is left of the file:
// kv = u64 key length + 1 key byte + u32 type + 1 value byte; tensor info = u64 name length + 1 name byte +
// u32 n_dims (0 dims) + u32 type + u64 offset.
#define KV_MIN_BYTES 14u
#define TENSOR_MIN_BYTES 25u

static ll_status wrong_type(const ll_gguf *g, const ll_gguf_kv *kv, const char *want, ll_error *err);

const char *ll_gguf_vtype_name(uint32_t t) { return t < LL_GGUF_VTYPE_COUNT ? k_vtype_names[t] : "unknown"; }

static uint64_t rd_le64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t rd_le32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

// ---- cursor over the untrusted bytes ------------------------------------------------------------------
typedef struct rd {
    const uint8_t *p;
    uint64_t size, pos;
    const char *path;
    ll_error *err;
    char ctx[200]; // what is being read, for truncation messages ("key 'general.name'")
} rd;

static void rd_ctx(rd *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rd_ctx(rd *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->ctx, sizeof r->ctx, fmt, ap);
    va_end(ap);
}

// Take n bytes at the cursor, or fail naming what was being read.
static bool rd_take(rd *r, uint64_t n, const uint8_t **out) {
    if (n <= r->size - r->pos) {
        *out = r->p + r->pos;
        r->pos += n;
        return true;
    }
    ll_err_set(r->err, LL_ERR_FORMAT,
               "%s: truncated header: %s needs %" PRIu64 " bytes at offset %" PRIu64 " but the file has %" PRIu64
               " bytes: the file is truncated or corrupt",
               r->path, r->ctx, n, r->pos, r->size);
    return false;
}

static bool rd_u32(rd *r, uint32_t *v) {
    const uint8_t *b;
    if (!rd_take(r, 4, &b)) return false;
    *v = rd_le32(b);
    return true;
}

static bool rd_u64(rd *r, uint64_t *v) {
    const uint8_t *b;
    if (!rd_take(r, 8, &b)) return false;
    *v = rd_le64(b);
    return true;
}

// u64 length + bytes; the length is checked against what is left before anything is taken.
static bool rd_str(rd *r, ll_str *s) {
    uint64_t len;
    if (!rd_u64(r, &len)) return false;
    if (len > r->size - r->pos) {
        ll_err_set(r->err, LL_ERR_FORMAT,
                   "%s: %s: string length %" PRIu64 " at offset %" PRIu64 " exceeds the %" PRIu64
                   " bytes left in the file: the file is truncated or corrupt",
                   r->path, r->ctx, len, r->pos - 8, r->size - r->pos);
        return false;
    }
    s->ptr = (const char *)r->p + r->pos;
    r->pos += len;
    s->len = len;
    return true;
}

// A key or tensor name: non-empty, no NUL byte (it is kept as a C string).
static bool rd_name(rd *r, char **out, const char *what, uint64_t i) {
    ll_str s;
    rd_ctx(r, "the %s of entry %" PRIu64, what, i);
    if (!rd_str(r, &s)) return false;
    if (s.len == 0 || memchr(s.ptr, 0, s.len)) {
        ll_err_set(r->err, LL_ERR_FORMAT, "%s: %s %" PRIu64 " (at offset %" PRIu64 ") is %s: the file is corrupt",
                   r->path, what, i, r->pos - s.len - 8, s.len ? "not valid text (contains a NUL byte)" : "empty");
        return false;
    }
    *out = ll_strndup(s.ptr, (size_t)s.len);
    return true;
}

// ---- key/value pairs --------------------------------------------------------------------------------------
// n values of type t (not ARRAY) at the cursor: sizes checked before use, bools 0/1, strings walked.
static bool rd_values(rd *r, const char *key, uint32_t t, uint64_t n, bool is_arr) {
    uint64_t es = k_vtype_size[t], left = r->size - r->pos;
    const uint8_t *b;
    if (t == LL_GGUF_STRING) {
        if (n > left / 8) goto too_many;
        for (uint64_t i = 0; i < n; i++) { // a hot loop for vocabularies: the message is made only on failure
            if (r->size - r->pos < 8 || rd_le64(r->p + r->pos) > r->size - r->pos - 8) {
                char which[64] = "";
                if (is_arr) snprintf(which, sizeof which, " %" PRIu64 " of %" PRIu64, i, n);
                if (r->size - r->pos < 8)
                    ll_err_set(r->err, LL_ERR_FORMAT,
                               "%s: truncated header: key '%.100s': string%s at offset %" PRIu64
                               " runs past the end of the file (%" PRIu64 " bytes): the file is truncated or corrupt",
                               r->path, key, which, r->pos, r->size);
                else
                    ll_err_set(r->err, LL_ERR_FORMAT,
                               "%s: key '%.100s': string%s at offset %" PRIu64 " has length %" PRIu64
                               ", which runs past the end of the file (%" PRIu64
                               " bytes): the file is truncated or corrupt",
                               r->path, key, which, r->pos, rd_le64(r->p + r->pos), r->size);
                return false;
            }
            r->pos += 8 + rd_le64(r->p + r->pos);
        }
        return true;
    }
    if (n > left / es) goto too_many;
    b = r->p + r->pos;
    r->pos += n * es;
    if (t == LL_GGUF_BOOL) {
        for (uint64_t i = 0; i < n; i++) {
            if (b[i] > 1) {
                ll_err_set(r->err, LL_ERR_FORMAT,
                           "%s: key '%.100s': bool value %u at index %" PRIu64 " is not 0 or 1: the file is corrupt",
                           r->path, key, b[i], i);
                return false;
            }
        }
    }
    return true;
too_many:
    ll_err_set(r->err, LL_ERR_FORMAT,
               "%s: key '%.100s' holds %" PRIu64 " %s values, more than the %" PRIu64
               " bytes left in the file can hold: the file is truncated or corrupt",
               r->path, key, n, k_vtype_names[t], left);
    return false;
}

static bool rd_kv(rd *r, ll_gguf_kv *kv, uint64_t i) {
    if (!rd_name(r, &kv->key, "key", i)) return false;
    rd_ctx(r, "the type of key '%.100s'", kv->key);
    if (!rd_u32(r, &kv->type)) return false;
    if (kv->type >= LL_GGUF_VTYPE_COUNT) {
        ll_err_set(r->err, LL_ERR_FORMAT, "%s: key '%.100s' has unknown value type %" PRIu32 ": the file is corrupt",
                   r->path, kv->key, kv->type);
        return false;
    }
    uint32_t t = kv->type;
    uint64_t n = 1;
    if (t == LL_GGUF_ARRAY) {
        rd_ctx(r, "the array header of key '%.100s'", kv->key);
        if (!rd_u32(r, &kv->arr_type) || !rd_u64(r, &kv->arr_n)) return false;
        if (kv->arr_type == LL_GGUF_ARRAY) {
            ll_err_set(r->err, LL_ERR_FORMAT,
                       "%s: key '%.100s' is a nested array (an array of arrays), which is not supported", r->path,
                       kv->key);
            return false;
        }
        if (kv->arr_type >= LL_GGUF_VTYPE_COUNT) {
            ll_err_set(r->err, LL_ERR_FORMAT,
                       "%s: key '%.100s' is an array of unknown element type %" PRIu32 ": the file is corrupt",
                       r->path, kv->key, kv->arr_type);
            return false;
        }
        t = kv->arr_type;
        n = kv->arr_n;
    }
    rd_ctx(r, "the value of key '%.100s'", kv->key);
    uint64_t start = r->pos;
    if (!rd_values(r, kv->key, t, n, kv->type == LL_GGUF_ARRAY)) return false;
    kv->data = r->p + start;
    kv->nbytes = r->pos - start;
    return true;
}

// ---- duplicate detection and overlap: sort (key, index) pairs, compare neighbours (O(n log n)) ------------
typedef struct sort_item {
    const char *name;
    uint64_t off, idx;
} sort_item;

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const sort_item *)a)->name, ((const sort_item *)b)->name);
}
static int cmp_off(const void *a, const void *b) {
    uint64_t x = ((const sort_item *)a)->off, y = ((const sort_item *)b)->off;
    return x < y ? -1 : x > y;
}

static bool check_dups(rd *r, sort_item *it, uint64_t n, const char *what) {
    if (n < 2) return true;
    qsort(it, (size_t)n, sizeof *it, cmp_name);
    for (uint64_t i = 1; i < n; i++) {
        if (strcmp(it[i - 1].name, it[i].name) == 0) {
            uint64_t a = it[i - 1].idx < it[i].idx ? it[i - 1].idx : it[i].idx;
            uint64_t b = it[i - 1].idx < it[i].idx ? it[i].idx : it[i - 1].idx;
            ll_err_set(r->err, LL_ERR_FORMAT,
                       "%s: duplicate %s '%.200s' (entries %" PRIu64 " and %" PRIu64 "): the file is corrupt", r->path,
                       what, it[i].name, a, b);
            return false;
        }
    }
    return true;
}

// ---- the header -------------------------------------------------------------------------------------------
static bool rd_header(rd *r, ll_gguf *g, uint64_t *n_tensors, uint64_t *n_kv) {
    if (r->size < 4 || memcmp(r->p, "GGUF", 4) != 0) {
        if (r->size < 4)
            ll_err_set(r->err, LL_ERR_FORMAT, "%s: not a GGUF file (it is only %" PRIu64 " bytes long)", r->path,
                       r->size);
        else
            ll_err_set(r->err, LL_ERR_FORMAT,
                       "%s: not a GGUF file (bad magic: the first bytes are %02x %02x %02x %02x, expected \"GGUF\")",
                       r->path, r->p[0], r->p[1], r->p[2], r->p[3]);
        return false;
    }
    r->pos = 4;
    uint32_t v;
    rd_ctx(r, "the version field");
    if (!rd_u32(r, &v)) return false;
    if (v == 1) {
        ll_err_set(r->err, LL_ERR_UNSUPPORTED,
                   "%s: GGUF version 1 is not supported (the 2023 format with 32-bit counts); convert the model again "
                   "with a current llama.cpp to get version 3",
                   r->path);
        return false;
    }
    if (v >= 0x10000 && (v & 0xffff) == 0) {
        ll_err_set(r->err, LL_ERR_UNSUPPORTED,
                   "%s: this GGUF file is big-endian (its version field reads 0x%08" PRIx32
                   "); only little-endian files are supported: convert it again without --bigendian",
                   r->path, v);
        return false;
    }
    if (v != 2 && v != 3) {
        ll_err_set(r->err, LL_ERR_UNSUPPORTED,
                   "%s: unsupported GGUF version %" PRIu32 " (this reader knows versions 2 and 3)", r->path, v);
        return false;
    }
    g->version = v;
    rd_ctx(r, "the tensor count");
    if (!rd_u64(r, n_tensors)) return false;
    rd_ctx(r, "the key/value count");
    if (!rd_u64(r, n_kv)) return false;
    // Refuse counts that cannot fit before allocating anything for them.
    uint64_t left = r->size - r->pos;
    if (*n_kv > left / KV_MIN_BYTES) {
        ll_err_set(r->err, LL_ERR_FORMAT,
                   "%s: the header claims %" PRIu64 " key/value pairs but only %" PRIu64
                   " bytes follow (each needs at least %u): the file is truncated or corrupt",
                   r->path, *n_kv, left, KV_MIN_BYTES);
        return false;
    }
    if (*n_tensors > (left - *n_kv * KV_MIN_BYTES) / TENSOR_MIN_BYTES) {
        ll_err_set(r->err, LL_ERR_FORMAT,
                   "%s: the header claims %" PRIu64 " tensors but only %" PRIu64
                   " bytes follow (each tensor info needs at least %u): the file is truncated or corrupt",
                   r->path, *n_tensors, left, TENSOR_MIN_BYTES);
        return false;
    }
    return true;
}

// Make room for one more entry (doubling), so memory follows what was actually parsed, not a claimed count.
static bool grow(void **arr, uint64_t *cap, uint64_t n, size_t es, ll_error *err) {
    if (n < *cap) return true;
    uint64_t nc = *cap ? *cap * 2 : 16;
    size_t bytes;
    if (!ll_mul_ok((size_t)nc, es, &bytes)) return ll_err_set(err, LL_ERR_NOMEM, "too many GGUF entries"), false;
    void *p = realloc(*arr, bytes);
    if (!p) return ll_err_set(err, LL_ERR_NOMEM, "could not allocate %zu bytes for GGUF entries", bytes), false;
    memset((char *)p + (size_t)*cap * es, 0, (size_t)(nc - *cap) * es);
    *arr = p;
    *cap = nc;
    return true;
}

static bool rd_kvs(rd *r, ll_gguf *g, uint64_t n_kv) {
    for (uint64_t i = 0; i < n_kv; i++) {
        if (!grow((void **)&g->kv, &g->cap_kv, g->n_kv, sizeof *g->kv, r->err)) return false;
        ll_gguf_kv *kv = &g->kv[g->n_kv++]; // counted now so that its key is freed on failure
        if (!rd_kv(r, kv, i)) return false;
    }
    sort_item *it = ll_calloc((size_t)n_kv, sizeof *it, r->err);
    if (!it) return false;
    for (uint64_t i = 0; i < n_kv; i++) it[i] = (sort_item){g->kv[i].key, 0, i};
    bool ok = check_dups(r, it, n_kv, "key");
    free(it);
    if (!ok) return false;

    g->alignment = LL_GGUF_DEFAULT_ALIGNMENT;
    const ll_gguf_kv *akv = ll_gguf_find(g, "general.alignment");
    if (akv) {
        uint32_t a;
        if (akv->type != LL_GGUF_UINT32) {
            wrong_type(g, akv, "uint32", r->err);
            return false;
        }
        memcpy(&a, akv->data, 4);
        if (a == 0 || (a & (a - 1)) != 0) {
            ll_err_set(r->err, LL_ERR_FORMAT,
                       "%s: key 'general.alignment' is %" PRIu32 "; it must be a nonzero power of two: the file is "
                       "corrupt",
                       r->path, a);
            return false;
        }
        g->alignment = a;
    }
    return true;
}

// ---- tensor infos -----------------------------------------------------------------------------------------
static bool rd_dims(rd *r, ll_gguf_tensor *t) {
    rd_ctx(r, "the info of tensor '%.100s'", t->name);
    if (!rd_u32(r, &t->n_dims)) return false;
    if (t->n_dims > LL_GGUF_MAX_DIMS) {
        ll_err_set(r->err, LL_ERR_FORMAT, "%s: tensor '%.200s' has %" PRIu32 " dimensions; at most %d are supported",
                   r->path, t->name, t->n_dims, LL_GGUF_MAX_DIMS);
        return false;
    }
    uint64_t count = 1;
    for (int d = 0; d < LL_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t v;
        if (!rd_u64(r, &v)) return false;
        if (v == 0 || v > (uint64_t)INT64_MAX) {
            ll_err_set(r->err, LL_ERR_FORMAT,
                       "%s: tensor '%.200s' dimension %" PRIu32 " is %" PRId64 "; dimensions must be positive: the "
                       "file is corrupt",
                       r->path, t->name, d, (int64_t)v);
            return false;
        }
        if (!ll_mul_u64(count, v, &count) || count > (uint64_t)INT64_MAX) {
            ll_err_set(r->err, LL_ERR_FORMAT,
                       "%s: tensor '%.200s' has too many elements (the product of its dimensions overflows): the file "
                       "is corrupt",
                       r->path, t->name);
            return false;
        }
        t->ne[d] = (int64_t)v;
    }
    return true;
}

static bool rd_tensor(rd *r, const ll_gguf *g, ll_gguf_tensor *t, uint64_t i) {
    if (!rd_name(r, &t->name, "tensor name", i) || !rd_dims(r, t)) return false;
    if (!rd_u32(r, &t->type) || !rd_u64(r, &t->offset)) return false;
    const ll_type_traits *tt = ll_type_get(t->type);
    if (!tt) {
        ll_err_set(r->err, LL_ERR_UNSUPPORTED,
                   "%s: tensor '%.200s' has unknown type id %" PRIu32
                   " (a ggml type newer than this reader, or a corrupt file)",
                   r->path, t->name, t->type);
        return false;
    }
    uint64_t row, rows = (uint64_t)t->ne[1] * (uint64_t)t->ne[2] * (uint64_t)t->ne[3]; // fits: checked product
    if ((uint64_t)t->ne[0] % (uint64_t)tt->blck != 0) {
        ll_err_set(r->err, LL_ERR_FORMAT,
                   "%s: tensor '%.200s' (%s) has rows of %" PRId64 " elements, not a multiple of the %s block size "
                   "%d: the file is corrupt",
                   r->path, t->name, tt->name, t->ne[0], tt->name, tt->blck);
        return false;
    }
    if (!ll_type_row_size(t->type, (uint64_t)t->ne[0], &row) || !ll_mul_u64(row, rows, &t->nbytes)) {
        ll_err_set(r->err, LL_ERR_FORMAT, "%s: tensor '%.200s' is too large (its byte size overflows): the file is corrupt",
                   r->path, t->name);
        return false;
    }
    if (t->offset % g->alignment != 0) {
        ll_err_set(r->err, LL_ERR_FORMAT,
                   "%s: tensor '%.200s' data offset %" PRIu64 " is not a multiple of the alignment %" PRIu64
                   ": the file is corrupt",
                   r->path, t->name, t->offset, g->alignment);
        return false;
    }
    return true;
}

// Data section at align_up(end of infos); every tensor inside the file; no two tensors overlapping.
static bool check_data(rd *r, ll_gguf *g, sort_item *it) {
    uint64_t n = g->n_tensors, ds = r->pos + (g->alignment - r->pos % g->alignment) % g->alignment;
    g->data_offset = ds; // pos <= size and alignment <= 2^31: no overflow
    for (uint64_t i = 0; i < n; i++) {
        ll_gguf_tensor *t = &g->tensors[i];
        uint64_t a, b;
        if (!ll_add_u64(ds, t->offset, &a) || !ll_add_u64(a, t->nbytes, &b)) { // no wrapped sums in the message
            ll_err_set(r->err, LL_ERR_FORMAT,
                       "%s: tensor '%.200s' data offset %" PRIu64 " (%" PRIu64 " bytes) is far outside the file (%" PRIu64
                       " bytes): the file is corrupt",
                       r->path, t->name, t->offset, t->nbytes, r->size);
            return false;
        }
        if (b > r->size) {
            ll_err_set(r->err, LL_ERR_FORMAT,
                       "%s: tensor '%.200s' data [%" PRIu64 ", %" PRIu64 ") is outside the file (%" PRIu64
                       " bytes): the file is truncated or corrupt",
                       r->path, t->name, a, b, r->size);
            return false;
        }
        t->data = r->p + a;
        it[i] = (sort_item){t->name, t->offset, i};
    }
    if (n < 2) return true;
    qsort(it, (size_t)n, sizeof *it, cmp_off);
    for (uint64_t i = 1; i < n; i++) {
        const ll_gguf_tensor *p = &g->tensors[it[i - 1].idx], *q = &g->tensors[it[i].idx];
        if (p->offset + p->nbytes > q->offset) { // both ranges are inside the file: no overflow
            ll_err_set(r->err, LL_ERR_FORMAT,
                       "%s: tensors '%.200s' [%" PRIu64 ", %" PRIu64 ") and '%.200s' [%" PRIu64 ", %" PRIu64
                       ") overlap: the file is corrupt",
                       r->path, p->name, ds + p->offset, ds + p->offset + p->nbytes, q->name, ds + q->offset,
                       ds + q->offset + q->nbytes);
            return false;
        }
    }
    return true;
}

static bool rd_tensors(rd *r, ll_gguf *g, uint64_t n_tensors) {
    for (uint64_t i = 0; i < n_tensors; i++) {
        if (!grow((void **)&g->tensors, &g->cap_tensors, g->n_tensors, sizeof *g->tensors, r->err)) return false;
        ll_gguf_tensor *t = &g->tensors[g->n_tensors++];
        if (!rd_tensor(r, g, t, i)) return false;
    }
    sort_item *it = ll_calloc((size_t)n_tensors, sizeof *it, r->err);
    if (!it) return false;
    for (uint64_t i = 0; i < n_tensors; i++) it[i] = (sort_item){g->tensors[i].name, 0, i};
    bool ok = check_dups(r, it, n_tensors, "tensor") && check_data(r, g, it);
    free(it);
    return ok;
}

static ll_status parse(ll_gguf *g, const uint8_t *buf, uint64_t size, ll_error *err) {
    rd r = {.p = buf, .size = size, .path = g->path, .err = err};
    uint64_t n_tensors, n_kv;
    if (rd_header(&r, g, &n_tensors, &n_kv) && rd_kvs(&r, g, n_kv) && rd_tensors(&r, g, n_tensors)) return LL_OK;
    if (err->status == LL_ERR_NOMEM) ll_err_prefix(err, "%s: ", g->path); // allocation messages name no file
    return err->status;
}

// ---- lifecycle ------------------------------------------------------------------------------------------
ll_gguf *ll_gguf_new(const char *name) {
    ll_gguf *g = calloc(1, sizeof *g);
    LL_ASSERT(g != NULL);
    g->path = ll_strdup(name ? name : "<new gguf>");
    g->version = 3;
    g->alignment = LL_GGUF_DEFAULT_ALIGNMENT;
    return g;
}

ll_status ll_gguf_open_memory(ll_gguf **out, const void *buf, size_t size, const char *name, ll_error *err) {
    *out = NULL;
    ll_error local;
    if (!err) err = &local; // parse() reads the status back from err
    ll_gguf *g = ll_gguf_new(name ? name : "<memory>");
    ll_status s = parse(g, buf, size, err);
    if (s != LL_OK) {
        ll_gguf_free(g);
        return s;
    }
    *out = g;
    return LL_OK;
}

ll_status ll_gguf_open(ll_gguf **out, const char *path, ll_error *err) {
    *out = NULL;
    ll_map *m;
    ll_status s = ll_map_open(&m, path, err);
    if (s != LL_OK) return s;
    s = ll_gguf_open_memory(out, m->data, m->size, path, err);
    if (s != LL_OK) {
        ll_map_free(m);
        return s;
    }
    (*out)->map = m;
    return LL_OK;
}

// g->owned is a singly linked list of blocks from malloc whose first member is the next pointer
// (builder values, gguf_write.c).
void ll_gguf_free(ll_gguf *g) {
    if (!g) return;
    for (uint64_t i = 0; i < g->n_kv; i++) free(g->kv[i].key);
    for (uint64_t i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->kv);
    free(g->tensors);
    for (void *b = g->owned; b;) {
        void *next = *(void **)b;
        free(b);
        b = next;
    }
    ll_map_free(g->map);
    free(g->path);
    free(g);
}

// ---- lookups and getters ----------------------------------------------------------------------------------
const ll_gguf_kv *ll_gguf_find(const ll_gguf *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (strcmp(g->kv[i].key, key) == 0) return &g->kv[i];
    return NULL;
}

const ll_gguf_tensor *ll_gguf_find_tensor(const ll_gguf *g, const char *name) {
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
    return NULL;
}

bool ll_str_eq(ll_str s, const char *z) {
    size_t n = strlen(z);
    return s.len == n && (n == 0 || memcmp(s.ptr, z, n) == 0);
}

static const ll_gguf_kv *need(const ll_gguf *g, const char *key, ll_error *err) {
    const ll_gguf_kv *kv = ll_gguf_find(g, key);
    if (!kv) ll_err_set(err, LL_ERR_MISSING, "%s: missing required key '%s'", g->path, key);
    return kv;
}

static ll_status wrong_type(const ll_gguf *g, const ll_gguf_kv *kv, const char *want, ll_error *err) {
    if (kv->type == LL_GGUF_ARRAY)
        return ll_err_set(err, LL_ERR_FORMAT, "%s: key '%s' is an array of %s; expected %s", g->path, kv->key,
                          ll_gguf_vtype_name(kv->arr_type), want);
    return ll_err_set(err, LL_ERR_FORMAT, "%s: key '%s' has type %s; expected %s", g->path, kv->key,
                      ll_gguf_vtype_name(kv->type), want);
}

// An integer value read at p with type t: negative values in *s (neg = true), others in *u.
static bool read_int(uint32_t t, const uint8_t *p, bool *neg, uint64_t *u, int64_t *s) {
    int64_t v;
    *neg = false;
    switch (t) {
    case LL_GGUF_UINT8: *u = p[0]; return true;
    case LL_GGUF_UINT16: { uint16_t x; memcpy(&x, p, 2); *u = x; return true; }
    case LL_GGUF_UINT32: { uint32_t x; memcpy(&x, p, 4); *u = x; return true; }
    case LL_GGUF_UINT64: { uint64_t x; memcpy(&x, p, 8); *u = x; return true; }
    case LL_GGUF_INT8: v = (int8_t)p[0]; break;
    case LL_GGUF_INT16: { int16_t x; memcpy(&x, p, 2); v = x; break; }
    case LL_GGUF_INT32: { int32_t x; memcpy(&x, p, 4); v = x; break; }
    case LL_GGUF_INT64: { int64_t x; memcpy(&x, p, 8); v = x; break; }
    default: return false;
    }
    *neg = v < 0;
    *s = v;
    *u = v < 0 ? 0 : (uint64_t)v;
    return true;
}

// Integer key whose value must lie in [lo, hi] (lo <= 0 <= hi); out as int64 bits or uint64.
static ll_status get_int(const ll_gguf *g, const char *key, int64_t lo, uint64_t hi, bool *neg, uint64_t *u,
                         int64_t *s, const char *want, ll_error *err) {
    const ll_gguf_kv *kv = need(g, key, err);
    if (!kv) return LL_ERR_MISSING;
    if (kv->type == LL_GGUF_ARRAY || !read_int(kv->type, kv->data, neg, u, s)) return wrong_type(g, kv, "an integer", err);
    if (*neg ? *s < lo : *u > hi) {
        if (*neg)
            return ll_err_set(err, LL_ERR_FORMAT, "%s: key '%s' is %" PRId64 ", out of range for %s", g->path, key, *s,
                              want);
        return ll_err_set(err, LL_ERR_FORMAT, "%s: key '%s' is %" PRIu64 ", out of range for %s", g->path, key, *u,
                          want);
    }
    return LL_OK;
}

ll_status ll_gguf_get_u64(const ll_gguf *g, const char *key, uint64_t *out, ll_error *err) {
    bool neg;
    uint64_t u;
    int64_t s;
    ll_status st = get_int(g, key, 0, UINT64_MAX, &neg, &u, &s, "uint64", err);
    if (st == LL_OK) *out = u;
    return st;
}

ll_status ll_gguf_get_u32(const ll_gguf *g, const char *key, uint32_t *out, ll_error *err) {
    bool neg;
    uint64_t u;
    int64_t s;
    ll_status st = get_int(g, key, 0, UINT32_MAX, &neg, &u, &s, "uint32", err);
    if (st == LL_OK) *out = (uint32_t)u;
    return st;
}

ll_status ll_gguf_get_i64(const ll_gguf *g, const char *key, int64_t *out, ll_error *err) {
    bool neg;
    uint64_t u;
    int64_t s;
    ll_status st = get_int(g, key, INT64_MIN, INT64_MAX, &neg, &u, &s, "int64", err);
    if (st == LL_OK) *out = neg ? s : (int64_t)u;
    return st;
}

ll_status ll_gguf_get_f32(const ll_gguf *g, const char *key, float *out, ll_error *err) {
    const ll_gguf_kv *kv = need(g, key, err);
    if (!kv) return LL_ERR_MISSING;
    if (kv->type == LL_GGUF_FLOAT32) {
        memcpy(out, kv->data, 4);
        return LL_OK;
    }
    if (kv->type != LL_GGUF_FLOAT64) return wrong_type(g, kv, "a float", err);
    double d;
    memcpy(&d, kv->data, 8);
    if (d == d && d > -HUGE_VAL && d < HUGE_VAL && (d > FLT_MAX || d < -FLT_MAX))
        return ll_err_set(err, LL_ERR_FORMAT, "%s: key '%s' is %g, out of range for float32", g->path, key, d);
    *out = (float)d;
    return LL_OK;
}

ll_status ll_gguf_get_bool(const ll_gguf *g, const char *key, bool *out, ll_error *err) {
    const ll_gguf_kv *kv = need(g, key, err);
    if (!kv) return LL_ERR_MISSING;
    if (kv->type != LL_GGUF_BOOL) return wrong_type(g, kv, "a bool", err);
    *out = kv->data[0] != 0;
    return LL_OK;
}

ll_status ll_gguf_get_str(const ll_gguf *g, const char *key, ll_str *out, ll_error *err) {
    const ll_gguf_kv *kv = need(g, key, err);
    if (!kv) return LL_ERR_MISSING;
    if (kv->type != LL_GGUF_STRING) return wrong_type(g, kv, "a string", err);
    out->len = rd_le64(kv->data);
    out->ptr = (const char *)kv->data + 8;
    return LL_OK;
}

ll_status ll_gguf_get_arr(const ll_gguf *g, const char *key, uint32_t *arr_type, uint64_t *n, const uint8_t **data,
                          ll_error *err) {
    const ll_gguf_kv *kv = need(g, key, err);
    if (!kv) return LL_ERR_MISSING;
    if (kv->type != LL_GGUF_ARRAY) return wrong_type(g, kv, "an array", err);
    *arr_type = kv->arr_type;
    *n = kv->arr_n;
    *data = kv->data;
    return LL_OK;
}

// ---- array elements ---------------------------------------------------------------------------------------
void ll_gguf_arr_strings(const ll_gguf_kv *kv, ll_str *out) {
    LL_ASSERT(kv->type == LL_GGUF_ARRAY && kv->arr_type == LL_GGUF_STRING);
    const uint8_t *p = kv->data;
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        out[i].len = rd_le64(p);
        out[i].ptr = (const char *)p + 8;
        p += 8 + out[i].len;
    }
}

static const uint8_t *arr_elem(const ll_gguf_kv *kv, uint64_t i) {
    LL_ASSERT(kv->type == LL_GGUF_ARRAY && kv->arr_type < LL_GGUF_VTYPE_COUNT && k_vtype_size[kv->arr_type] != 0);
    LL_ASSERT(i < kv->arr_n);
    return kv->data + i * k_vtype_size[kv->arr_type];
}

double ll_gguf_arr_f64(const ll_gguf_kv *kv, uint64_t i) {
    const uint8_t *p = arr_elem(kv, i);
    bool neg;
    uint64_t u;
    int64_t s;
    if (kv->arr_type == LL_GGUF_FLOAT32) { float f; memcpy(&f, p, 4); return f; }
    if (kv->arr_type == LL_GGUF_FLOAT64) { double d; memcpy(&d, p, 8); return d; }
    if (kv->arr_type == LL_GGUF_BOOL) return p[0];
    read_int(kv->arr_type, p, &neg, &u, &s);
    return neg ? (double)s : (double)u;
}

int64_t ll_gguf_arr_i64(const ll_gguf_kv *kv, uint64_t i) {
    const uint8_t *p = arr_elem(kv, i);
    bool neg;
    uint64_t u;
    int64_t s;
    if (kv->arr_type == LL_GGUF_FLOAT32 || kv->arr_type == LL_GGUF_FLOAT64) {
        double d = ll_gguf_arr_f64(kv, i); // saturate: a float-to-int cast out of range is undefined
        if (d != d) return 0;
        if (d >= 9223372036854775807.0) return INT64_MAX;
        if (d <= -9223372036854775808.0) return INT64_MIN;
        return (int64_t)d;
    }
    if (kv->arr_type == LL_GGUF_BOOL) return p[0];
    read_int(kv->arr_type, p, &neg, &u, &s);
    return neg ? s : (int64_t)u; // uint64 above INT64_MAX wraps (documented: no range check)
}
