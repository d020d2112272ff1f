// hw_cuda_blas.cu — opens cuBLAS and cuBLASLt at run time, the first time a GPU section needs them, and
// fills the hw_blas table (hw_cuda_util.h says why they are not linked).
#include "bench/hw_cuda_util.h"

#include <dlfcn.h>
#include <mutex>

#define HW_STR(x) #x
#define HW_XSTR(x) HW_STR(x) // expands cublasCreate -> "cublasCreate_v2" first

// dlopen the library by soname (CUBLAS_VER_MAJOR), then the unversioned name, then under /usr/local/cuda.
static void *open_lib(const char *base, char *why, size_t whycap) {
    char names[3][160];
    snprintf(names[0], sizeof names[0], "%s.so.%d", base, CUBLAS_VER_MAJOR);
    snprintf(names[1], sizeof names[1], "%s.so", base);
    snprintf(names[2], sizeof names[2], "/usr/local/cuda/lib64/%s.so.%d", base, CUBLAS_VER_MAJOR);
    for (int i = 0; i < 3; i++) {
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (h) return h;
    }
    const char *e = dlerror();
    snprintf(why, whycap, "cannot open %s: %s (install the CUDA %d cuBLAS libraries or set LD_LIBRARY_PATH)",
             names[0], e ? e : "not found", CUBLAS_VER_MAJOR);
    return NULL;
}

static bool load(hw_blas *b, char *why, size_t whycap) {
    void *lt = open_lib("libcublasLt", why, whycap);
    if (!lt) return false;
    void *cb = open_lib("libcublas", why, whycap);
    if (!cb) return false;
#define HW_BLAS_LOAD(f)                                                                                        \
    {                                                                                                          \
        void *p = dlsym(!strncmp(HW_XSTR(f), "cublasLt", 8) ? lt : cb, HW_XSTR(f));                            \
        if (!p) {                                                                                              \
            snprintf(why, whycap, "cuBLAS has no symbol %s (a CUDA %d library was expected)", HW_XSTR(f),     \
                     CUBLAS_VER_MAJOR);                                                                        \
            return false;                                                                                      \
        }                                                                                                      \
        b->p_##f = (decltype(b->p_##f))p;                                                                            \
    }
    HW_BLAS_FNS(HW_BLAS_LOAD)
#undef HW_BLAS_LOAD
    b->gemm_strided_batched = (hw_gemm_sb_fn)dlsym(cb, "cublasGemmStridedBatchedEx");
    if (!b->gemm_strided_batched) {
        snprintf(why, whycap, "cuBLAS has no symbol cublasGemmStridedBatchedEx");
        return false;
    }
    return true; // the handles stay open for the life of the process
}

static hw_blas g_blas;
static bool g_ok;
static char g_why[512];
static std::once_flag g_once;

const hw_blas *hw_blas_get(char *why, size_t whycap) {
    std::call_once(g_once, [] { g_ok = load(&g_blas, g_why, sizeof g_why); });
    if (!g_ok && why && whycap) snprintf(why, whycap, "%s", g_why);
    return g_ok ? &g_blas : NULL;
}

const char *hw_blas_status(cublasStatus_t s) {
    static char buf[64];
    if (g_ok) return g_blas.p_cublasLtGetStatusString(s);
    snprintf(buf, sizeof buf, "cuBLAS status %d", (int)s);
    return buf;
}
