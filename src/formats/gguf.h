// gguf.h — GGUF v2/v3: a validating reader over a read-only map (tensors used in place), an in-memory
// builder for importers (llama2.c) and generators (synth), and a streaming, atomic writer.
// Spec: ggml docs/gguf.md. All multi-byte fields little-endian.
#ifndef LL_GGUF_H
#define LL_GGUF_H

#include "core/core.h"
#include "types/types.h"

#define LL_GGUF_MAX_DIMS 4
#define LL_GGUF_DEFAULT_ALIGNMENT 32

typedef enum ll_gguf_vtype {
    LL_GGUF_UINT8 = 0,
    LL_GGUF_INT8 = 1,
    LL_GGUF_UINT16 = 2,
    LL_GGUF_INT16 = 3,
    LL_GGUF_UINT32 = 4,
    LL_GGUF_INT32 = 5,
    LL_GGUF_FLOAT32 = 6,
    LL_GGUF_BOOL = 7,
    LL_GGUF_STRING = 8,
    LL_GGUF_ARRAY = 9,
    LL_GGUF_UINT64 = 10,
    LL_GGUF_INT64 = 11,
    LL_GGUF_FLOAT64 = 12,
    LL_GGUF_VTYPE_COUNT
} ll_gguf_vtype;

// A string that is not NUL-terminated (points into the map or into builder-owned memory).
typedef struct ll_str {
    const char *ptr;
    uint64_t len;
} ll_str;

typedef struct ll_gguf_kv {
    char *key;           // NUL-terminated copy
    uint32_t type;       // ll_gguf_vtype
    uint32_t arr_type;   // element type when type == ARRAY (never ARRAY itself: nested arrays are refused)
    uint64_t arr_n;      // element count when type == ARRAY
    const uint8_t *data; // raw GGUF encoding of the value (for arrays: of the elements), validated
    uint64_t nbytes;     // bytes of that encoding
} ll_gguf_kv;

typedef struct ll_gguf_tensor {
    char *name;     // NUL-terminated copy
    uint32_t type;  // ll_type (known id; may still be one the engine cannot compute with)
    uint32_t n_dims;
    int64_t ne[LL_GGUF_MAX_DIMS]; // ne[0] = row length; unused dims are 1
    uint64_t offset;              // from the start of the data section
    uint64_t nbytes;
    const void *data;             // into the map (or a view given to the builder)
} ll_gguf_tensor;

typedef struct ll_gguf {
    char *path; // for messages
    uint32_t version;
    uint64_t n_kv, n_tensors;
    ll_gguf_kv *kv;
    ll_gguf_tensor *tensors;
    uint64_t alignment;
    uint64_t data_offset; // file offset of the tensor data section
    ll_map *map;          // owned: the parsed file, or a map adopted by an importer
    void *owned;          // builder-owned allocations (linked list)
    uint64_t cap_kv, cap_tensors;
} ll_gguf;

// ---- reading ------------------------------------------------------------------------------------------
// Parse and validate everything (counts, lengths, offsets, shapes, ranges, overlaps) before returning.
ll_status ll_gguf_open(ll_gguf **out, const char *path, ll_error *err);
// Same over a caller-owned buffer that must outlive the result (fuzzing, tests). name is used in messages.
ll_status ll_gguf_open_memory(ll_gguf **out, const void *buf, size_t size, const char *name, ll_error *err);
void ll_gguf_free(ll_gguf *g);

const ll_gguf_kv *ll_gguf_find(const ll_gguf *g, const char *key);
const ll_gguf_tensor *ll_gguf_find_tensor(const ll_gguf *g, const char *name);
const char *ll_gguf_vtype_name(uint32_t t);

// Typed getters. Missing key: LL_ERR_MISSING ("FILE: missing required key 'KEY'"). Wrong type or a value
// out of range for the destination: LL_ERR_FORMAT naming the key. Integers of any GGUF integer type convert
// when the value fits.
ll_status ll_gguf_get_u64(const ll_gguf *g, const char *key, uint64_t *out, ll_error *err);
ll_status ll_gguf_get_u32(const ll_gguf *g, const char *key, uint32_t *out, ll_error *err);
ll_status ll_gguf_get_i64(const ll_gguf *g, const char *key, int64_t *out, ll_error *err);
ll_status ll_gguf_get_f32(const ll_gguf *g, const char *key, float *out, ll_error *err); // F32 or F64
ll_status ll_gguf_get_bool(const ll_gguf *g, const char *key, bool *out, ll_error *err);
ll_status ll_gguf_get_str(const ll_gguf *g, const char *key, ll_str *out, ll_error *err);
// Array: element type and count; data is the raw encoding (numbers: packed little-endian).
ll_status ll_gguf_get_arr(const ll_gguf *g, const char *key, uint32_t *arr_type, uint64_t *n, const uint8_t **data,
                          ll_error *err);
// Fill out[0..n) with the strings of a string array (kv validated at parse, so this cannot fail).
void ll_gguf_arr_strings(const ll_gguf_kv *kv, ll_str *out);
// Element i of a numeric array as double / int64 (no range check beyond i < arr_n, asserted).
double ll_gguf_arr_f64(const ll_gguf_kv *kv, uint64_t i);
int64_t ll_gguf_arr_i64(const ll_gguf_kv *kv, uint64_t i);
bool ll_str_eq(ll_str s, const char *z);

// ---- building (importers, synth) ------------------------------------------------------------------------
ll_gguf *ll_gguf_new(const char *name); // empty, version 3, default alignment; aborts on OOM
// Setters replace an existing key of the same name. Values are copied.
void ll_gguf_set_u32(ll_gguf *g, const char *key, uint32_t v);
void ll_gguf_set_i32(ll_gguf *g, const char *key, int32_t v);
void ll_gguf_set_u64(ll_gguf *g, const char *key, uint64_t v);
void ll_gguf_set_f32(ll_gguf *g, const char *key, float v);
void ll_gguf_set_bool(ll_gguf *g, const char *key, bool v);
void ll_gguf_set_str(ll_gguf *g, const char *key, const char *v);
void ll_gguf_set_arr(ll_gguf *g, const char *key, uint32_t elem_type, uint64_t n, const void *data); // numbers
void ll_gguf_set_arr_str(ll_gguf *g, const char *key, uint64_t n, const ll_str *v);
void ll_gguf_copy_kv(ll_gguf *g, const ll_gguf_kv *kv); // from another file
// A tensor whose data lives elsewhere (e.g. a mapped llama2.c file; NULL while only declaring for a writer).
ll_status ll_gguf_add_tensor(ll_gguf *g, const char *name, uint32_t type, uint32_t n_dims, const int64_t *ne,
                             const void *data, ll_error *err);
// Hand a map to g so it lives as long as g (importers whose tensor views point into it).
void ll_gguf_adopt_map(ll_gguf *g, ll_map *m);

// ---- writing (streaming and atomic: PATH.tmp.PID, then rename) -----------------------------------------
typedef struct ll_gguf_writer ll_gguf_writer;
// Writes the header, all of meta's KVs and tensor infos (offsets computed with meta's alignment).
ll_status ll_gguf_writer_open(ll_gguf_writer **out, const char *path, const ll_gguf *meta, ll_error *err);
// Append tensor data in the declared order, in any number of pieces; padding is inserted automatically
// when a tensor's bytes are complete. Fails if more bytes are written than declared.
ll_status ll_gguf_writer_write(ll_gguf_writer *w, const void *data, size_t n, ll_error *err);
// Checks all declared bytes were written, flushes, fsyncs, renames to path.
ll_status ll_gguf_writer_finish(ll_gguf_writer *w, ll_error *err);
void ll_gguf_writer_abort(ll_gguf_writer *w); // unlinks the temporary file
// Whole file from a builder whose tensors all have data (convert).
ll_status ll_gguf_write_file(const ll_gguf *g, const char *path, ll_error *err);

#endif
