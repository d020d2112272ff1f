// backend.c — the backend registry: which backends this build has, which of them answer on this machine, and
// the choice of one by name ("cpu", "cuda") or automatically (the first whose probe finds a device).
#include <string.h>

#include "backend/backend.h"
#if defined(LL_HAVE_CUDA) && LL_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

static int cpu_probe(char *why, size_t cap) {
    (void)why, (void)cap;
    return 1;
}

static const ll_backend_entry k_backends[] = {
#if defined(LL_HAVE_CUDA) && LL_HAVE_CUDA
    {"cuda", ll_backend_cuda_device_count, ll_backend_cuda_init},
#endif
    {"cpu", cpu_probe, ll_backend_cpu_init},
};

const ll_backend_entry *ll_backend_list(int *n) {
    *n = (int)(sizeof k_backends / sizeof k_backends[0]);
    return k_backends;
}

const ll_backend_entry *ll_backend_find(const char *name) {
    for (size_t i = 0; i < sizeof k_backends / sizeof k_backends[0]; i++)
        if (name && !strcmp(k_backends[i].name, name)) return &k_backends[i];
    return NULL;
}

static ll_status init_entry(const ll_backend_entry *e, ll_backend **out, int n_threads, ll_error *err) {
    *out = e->init(n_threads, err);
    if (*out) return LL_OK;
    return err && err->status != LL_OK ? err->status : LL_ERR_UNSUPPORTED;
}

ll_status ll_backend_init(ll_backend **out, const char *device, int n_threads, ll_error *err) {
    *out = NULL;
    if (device && strcmp(device, "auto")) {
        const ll_backend_entry *e = ll_backend_find(device);
        if (!e) {
            if (!strcmp(device, "cuda"))
                return ll_err_set(err, LL_ERR_UNSUPPORTED, "this build has no CUDA (no nvcc at build time): use --device cpu");
            return ll_err_set(err, LL_ERR_ARG, "unknown device '%s' (cpu, cuda or auto)", device);
        }
        return init_entry(e, out, n_threads, err); // a named device must be had, or its reason said
    }
    int n;
    const ll_backend_entry *list = ll_backend_list(&n);
    for (int i = 0; i < n; i++) {
        char why[256] = "";
        if (list[i].probe(why, sizeof why) < 1) continue;
        if (init_entry(&list[i], out, n_threads, err) == LL_OK) return LL_OK;
        if (strcmp(list[i].name, "cpu"))
            ll_log(LL_LOG_WARN, "%s device present but unusable (%s): trying the next backend", list[i].name,
                   err ? err->message : "?");
    }
    return err && err->status != LL_OK ? err->status : ll_err_set(err, LL_ERR_INTERNAL, "no backend could start");
}

void ll_backend_free(ll_backend *b) {
    if (!b) return;
    b->ops->destroy(b);
}
