/* The onnxruntime custom op tritbench.TernaryMatMul (opset 1):
 *   inputs  X float or float16 [..., K] (float16 is widened exactly first), packed uint8
 *           [packed_size(K, N, packing)], scale float scalar
 *   attrs   K, N (int), packing ("tern2" | "tern1.67"), activation ("none" by default | "swiglu")
 *   output  Y float [..., N]; with activation "swiglu" (a fused gate|up layer, N even) Y float [..., N/2] =
 *           silu(Z[..., :N/2]) * Z[..., N/2:] of the product Z, one node where a graph would need Split,
 *           Sigmoid and two Muls (onnxruntime spends 4-6 % of a 1b decode step between nodes at batch 1)
 * and tritbench.F16MatMul (opset 1), an F16 head that reads 2 bytes per weight (tb_f16.c):
 *   inputs  X float [..., K], W float16 [N, K]
 *   attrs   K, N (int)
 *   output  Y float [..., N] = X @ W^T, float32 products and sums
 * Inputs are declared type-polymorphic so that a wrong dtype reaches KernelCompute and fails with this
 * op's own message instead of a generic type error.
 *
 * The ops' own clock (tritbench_op_clock_start / _stop): the wall time spent inside their KernelCompute calls,
 * summed, so that the matmul share of an unprofiled decode step can be measured (onnxruntime's profiler costs
 * about a millisecond per 1b step itself). Off, it costs one relaxed atomic load per call. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ort_abi.h"
#include "tb_driver.h"
#include "tb_f16.h"

#define TB_ELEM_FLOAT16 10

#define TB_EXPORT __attribute__((visibility("default")))
#define API(a, name) ((fn_##name)((void *const *)(a))[SLOT_##name])
#define TB_MAX_RANK 32

typedef struct {
    const OrtApi *api;
    int64_t K, N;
    int packing;
    int swiglu;
    char packing_name[16];
} tb_kernel;

static OrtStatus *tb_error(const OrtApi *api, const char *fmt, const char *detail) {
    char msg[512];
    snprintf(msg, sizeof msg, "TernaryMatMul: %s%s", fmt, detail ? detail : "");
    return API(api, CreateStatus)(ORT_INVALID_ARGUMENT, msg);
}

static const char *tb_elem_name(int t) {
    static const char *names[] = {"undefined", "float32", "uint8",  "int8",   "uint16", "int16",
                                  "int32",     "int64",   "string", "bool",   "float16", "float64",
                                  "uint32",    "uint64",  "complex64", "complex128", "bfloat16"};
    return t >= 0 && t < (int)(sizeof names / sizeof *names) ? names[t] : "other";
}

static OrtStatus *tb_create_kernel(const OrtCustomOp *op, const OrtApi *api, const OrtKernelInfo *info,
                                   void **out) {
    (void)op;
    tb_kernel k = {.api = api};
    OrtStatus *st;
    char detail[128];
    if ((st = API(api, KernelInfoGetAttribute_int64)(info, "K", &k.K))) {
        API(api, ReleaseStatus)(st);
        return tb_error(api, "missing int attribute K", NULL);
    }
    if ((st = API(api, KernelInfoGetAttribute_int64)(info, "N", &k.N))) {
        API(api, ReleaseStatus)(st);
        return tb_error(api, "missing int attribute N", NULL);
    }
    size_t size = sizeof k.packing_name;
    if ((st = API(api, KernelInfoGetAttribute_string)(info, "packing", k.packing_name, &size))) {
        API(api, ReleaseStatus)(st);
        return tb_error(api, "missing or over-long string attribute packing (expected tern2 or tern1.67)", NULL);
    }
    if (k.K < 1 || k.N < 1) {
        snprintf(detail, sizeof detail, "K=%lld N=%lld", (long long)k.K, (long long)k.N);
        return tb_error(api, "attributes K and N must be positive, got ", detail);
    }
    k.packing = tb_packing_from_name(k.packing_name);
    if (k.packing < 0) return tb_error(api, "unknown packing (expected tern2 or tern1.67): ", k.packing_name);
    char activation[16] = "none";
    size = sizeof activation;
    if ((st = API(api, KernelInfoGetAttribute_string)(info, "activation", activation, &size))) {
        API(api, ReleaseStatus)(st); /* absent: none (an over-long value fails the comparison below) */
        if (size > sizeof activation) return tb_error(api, "unknown activation (expected none or swiglu)", NULL);
        strcpy(activation, "none");
    }
    if (strcmp(activation, "swiglu") == 0)
        k.swiglu = 1;
    else if (strcmp(activation, "none") != 0)
        return tb_error(api, "unknown activation (expected none or swiglu): ", activation);
    if (k.swiglu && k.N % 2) {
        snprintf(detail, sizeof detail, "N=%lld", (long long)k.N);
        return tb_error(api, "activation swiglu needs an even N (gate and up columns), got ", detail);
    }
    tb_kernel *heap = malloc(sizeof k);
    if (!heap) return tb_error(api, "out of memory", NULL);
    *heap = k;
    *out = heap;
    return NULL;
}

static void tb_destroy_kernel(void *kernel) { free(kernel); }

/* Element type, rank and dims of one input. */
static OrtStatus *tb_describe(const OrtApi *api, const OrtValue *v, int *type, size_t *rank, int64_t *dims) {
    OrtTensorTypeAndShapeInfo *info;
    OrtStatus *st = API(api, GetTensorTypeAndShape)(v, &info);
    if (st) return st;
    if (!(st = API(api, GetTensorElementType)(info, type)) && !(st = API(api, GetDimensionsCount)(info, rank))) {
        if (*rank > TB_MAX_RANK)
            st = tb_error(api, "tensor rank above 32", NULL);
        else
            st = API(api, GetDimensions)(info, dims, *rank);
    }
    API(api, ReleaseTensorTypeAndShapeInfo)(info);
    return st;
}

static void tb_shape_str(const int64_t *dims, size_t rank, char *buf, size_t len) {
    size_t n = (size_t)snprintf(buf, len, "[");
    for (size_t i = 0; i < rank && n < len; i++) n += (size_t)snprintf(buf + n, len - n, i ? ", %lld" : "%lld",
                                                                     (long long)dims[i]);
    if (n < len) snprintf(buf + n, len - n, "]");
}

typedef struct {
    const OrtApi *api;
    const OrtKernelContext *ctx;
} tb_ort_runner;

static int tb_ort_parallel_for(void *runner, void (*fn)(void *, size_t), size_t total, void *user) {
    tb_ort_runner *r = runner;
    OrtStatus *st = API(r->api, KernelContext_ParallelFor)(r->ctx, fn, total, 0, user);
    if (!st) return 0;
    API(r->api, ReleaseStatus)(st);
    return -1;
}

static OrtStatus *tb_compute(void *kernel, OrtKernelContext *ctx) {
    const tb_kernel *k = kernel;
    const OrtApi *api = k->api;
    OrtStatus *st;
    char detail[320], shape[200];
    size_t ninputs;
    if ((st = API(api, KernelContext_GetInputCount)(ctx, &ninputs))) return st;
    if (ninputs != 3) return tb_error(api, "expects 3 inputs (X, packed, scale)", NULL);
    const OrtValue *vx, *vw, *vs;
    if ((st = API(api, KernelContext_GetInput)(ctx, 0, &vx))) return st;
    if ((st = API(api, KernelContext_GetInput)(ctx, 1, &vw))) return st;
    if ((st = API(api, KernelContext_GetInput)(ctx, 2, &vs))) return st;
    if (!vx || !vw || !vs) return tb_error(api, "an input is missing", NULL);

    int tx, tw, ts;
    size_t rx, rw, rs;
    int64_t dx[TB_MAX_RANK], dw[TB_MAX_RANK], ds[TB_MAX_RANK];
    if ((st = tb_describe(api, vx, &tx, &rx, dx))) return st;
    if ((st = tb_describe(api, vw, &tw, &rw, dw))) return st;
    if ((st = tb_describe(api, vs, &ts, &rs, ds))) return st;

    if (tx != TB_ELEM_FLOAT && tx != TB_ELEM_FLOAT16)
        return tb_error(api, "input X must be float32 or float16, got ", tb_elem_name(tx));
    if (rx == 0) return tb_error(api, "input X must have rank >= 1 ([..., K]), got a scalar", NULL);
    if (dx[rx - 1] != k->K) {
        tb_shape_str(dx, rx, shape, sizeof shape);
        snprintf(detail, sizeof detail, "%s but attribute K=%lld", shape, (long long)k->K);
        return tb_error(api, "input X's last dimension must equal K: X has shape ", detail);
    }
    if (tw != TB_ELEM_UINT8) return tb_error(api, "input packed must be uint8, got ", tb_elem_name(tw));
    int64_t want = tb_packed_size(k->K, k->N, k->packing), have = 1;
    for (size_t i = 0; i < rw; i++) have *= dw[i];
    if (rw != 1 || have != want) {
        tb_shape_str(dw, rw, shape, sizeof shape);
        snprintf(detail, sizeof detail, "%s but K=%lld, N=%lld, packing=%s needs a 1-D array of %lld bytes", shape,
                 (long long)k->K, (long long)k->N, k->packing_name, (long long)want);
        return tb_error(api, "packed weights do not match the attributes: packed has shape ", detail);
    }
    if (ts != TB_ELEM_FLOAT) return tb_error(api, "input scale must be float32, got ", tb_elem_name(ts));
    int64_t scount = 1;
    for (size_t i = 0; i < rs; i++) scount *= ds[i];
    if (rs > 1 || scount != 1) {
        tb_shape_str(ds, rs, shape, sizeof shape);
        return tb_error(api, "input scale must be a scalar (shape [] or [1]), got shape ", shape);
    }

    size_t M = 1;
    for (size_t i = 0; i + 1 < rx; i++) M *= (size_t)dx[i];
    int64_t dy[TB_MAX_RANK];
    memcpy(dy, dx, rx * sizeof *dx);
    dy[rx - 1] = k->swiglu ? k->N / 2 : k->N;
    OrtValue *vy;
    if ((st = API(api, KernelContext_GetOutput)(ctx, 0, dy, rx, &vy))) return st;
    if (M == 0) return NULL;

    void *px, *pw, *ps, *py;
    if ((st = API(api, GetTensorMutableData)((OrtValue *)vx, &px))) return st;
    if ((st = API(api, GetTensorMutableData)((OrtValue *)vw, &pw))) return st;
    if ((st = API(api, GetTensorMutableData)((OrtValue *)vs, &ps))) return st;
    if ((st = API(api, GetTensorMutableData)(vy, &py))) return st;

    const tb_kernels *kern = tb_select(detail, sizeof detail);
    if (!kern) return API(api, CreateStatus)(ORT_FAIL, detail);
    tb_ort_runner runner = {api, ctx};
    float *x = px, *z = py;
    if (tx == TB_ELEM_FLOAT16) { /* an f16 graph's activations (attention output): widened, exactly */
        if (!(x = malloc(M * (size_t)k->K * sizeof *x))) return tb_error(api, "out of memory", NULL);
        th_widen(px, M * (size_t)k->K, x);
    }
    if (k->swiglu && !(z = malloc(M * (size_t)k->N * sizeof *z))) {
        if (x != px) free(x);
        return tb_error(api, "out of memory", NULL);
    }
    int failed = tb_matmul(kern, x, M, (size_t)k->K, pw, k->packing, (size_t)k->N, *(const float *)ps, z,
                           tb_ort_parallel_for, &runner, detail, sizeof detail);
    if (x != px) free(x);
    if (k->swiglu) {
        if (!failed) tb_swiglu(kern, z, M, (size_t)k->N / 2, py);
        free(z);
    }
    return failed ? tb_error(api, "", detail) : NULL;
}

static atomic_int tb_clock_on;
static atomic_uint_fast64_t tb_clock_ns;

static uint64_t tb_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

TB_EXPORT void tritbench_op_clock_start(void) {
    atomic_store(&tb_clock_ns, 0);
    atomic_store(&tb_clock_on, 1);
}

TB_EXPORT uint64_t tritbench_op_clock_stop(void) {
    atomic_store(&tb_clock_on, 0);
    return atomic_load(&tb_clock_ns);
}

static OrtStatus *tb_clocked(OrtStatus *(*compute)(void *, OrtKernelContext *), void *kernel,
                             OrtKernelContext *ctx) {
    if (!atomic_load_explicit(&tb_clock_on, memory_order_relaxed)) return compute(kernel, ctx);
    uint64_t t0 = tb_now_ns();
    OrtStatus *st = compute(kernel, ctx);
    atomic_fetch_add(&tb_clock_ns, tb_now_ns() - t0);
    return st;
}

static OrtStatus *tb_compute_clocked(void *kernel, OrtKernelContext *ctx) { return tb_clocked(tb_compute, kernel, ctx); }

static const char *tb_op_name(const OrtCustomOp *op) { (void)op; return "TernaryMatMul"; }
static const char *tb_op_ep(const OrtCustomOp *op) { (void)op; return "CPUExecutionProvider"; }
static int tb_input_type(const OrtCustomOp *op, size_t i) { (void)op; (void)i; return TB_ELEM_UNDEFINED; }
static size_t tb_input_count(const OrtCustomOp *op) { (void)op; return 3; }
static int tb_output_type(const OrtCustomOp *op, size_t i) { (void)op; (void)i; return TB_ELEM_FLOAT; }
static size_t tb_output_count(const OrtCustomOp *op) { (void)op; return 1; }
static int tb_required(const OrtCustomOp *op, size_t i) { (void)op; (void)i; return TB_INPUT_OUTPUT_REQUIRED; }
static int tb_mem_default(const OrtCustomOp *op, size_t i) { (void)op; (void)i; return TB_MEM_TYPE_DEFAULT; }
static int tb_one(const OrtCustomOp *op) { (void)op; return 1; }
static int tb_end_version(const OrtCustomOp *op) { (void)op; return 0x7fffffff; }

static const OrtCustomOp tb_op = {
    .version = TB_ORT_API_VERSION,
    .CreateKernel = NULL,
    .GetName = tb_op_name,
    .GetExecutionProviderType = tb_op_ep,
    .GetInputType = tb_input_type,
    .GetInputTypeCount = tb_input_count,
    .GetOutputType = tb_output_type,
    .GetOutputTypeCount = tb_output_count,
    .KernelCompute = NULL,
    .KernelDestroy = tb_destroy_kernel,
    .GetInputCharacteristic = tb_required,
    .GetOutputCharacteristic = tb_required,
    .GetInputMemoryType = tb_mem_default,
    .GetVariadicInputMinArity = tb_one,
    .GetVariadicInputHomogeneity = tb_one,
    .GetVariadicOutputMinArity = tb_one,
    .GetVariadicOutputHomogeneity = tb_one,
    .CreateKernelV2 = tb_create_kernel,
    .KernelComputeV2 = tb_compute_clocked,
    .InferOutputShapeFn = NULL,
    .GetStartVersion = tb_one,
    .GetEndVersion = tb_end_version,
};

/* ---- F16MatMul ---- */

static OrtStatus *th_error(const OrtApi *api, const char *what, const char *detail) {
    char msg[512];
    snprintf(msg, sizeof msg, "F16MatMul: %s%s", what, detail ? detail : "");
    return API(api, CreateStatus)(ORT_INVALID_ARGUMENT, msg);
}

static OrtStatus *th_create_kernel(const OrtCustomOp *op, const OrtApi *api, const OrtKernelInfo *info,
                                   void **out) {
    (void)op;
    tb_kernel k = {.api = api};
    OrtStatus *st;
    if ((st = API(api, KernelInfoGetAttribute_int64)(info, "K", &k.K)) ||
        (st = API(api, KernelInfoGetAttribute_int64)(info, "N", &k.N))) {
        API(api, ReleaseStatus)(st);
        return th_error(api, "missing int attribute K or N", NULL);
    }
    if (k.K < 1 || k.N < 1) return th_error(api, "attributes K and N must be positive", NULL);
    tb_kernel *heap = malloc(sizeof k);
    if (!heap) return th_error(api, "out of memory", NULL);
    *heap = k;
    *out = heap;
    return NULL;
}

static OrtStatus *th_compute(void *kernel, OrtKernelContext *ctx) {
    const tb_kernel *k = kernel;
    const OrtApi *api = k->api;
    OrtStatus *st;
    char detail[320], shape[200];
    size_t ninputs;
    if ((st = API(api, KernelContext_GetInputCount)(ctx, &ninputs))) return st;
    if (ninputs != 2) return th_error(api, "expects 2 inputs (X, W)", NULL);
    const OrtValue *vx, *vw;
    if ((st = API(api, KernelContext_GetInput)(ctx, 0, &vx))) return st;
    if ((st = API(api, KernelContext_GetInput)(ctx, 1, &vw))) return st;
    if (!vx || !vw) return th_error(api, "an input is missing", NULL);
    int tx, tw;
    size_t rx, rw;
    int64_t dx[TB_MAX_RANK], dw[TB_MAX_RANK];
    if ((st = tb_describe(api, vx, &tx, &rx, dx))) return st;
    if ((st = tb_describe(api, vw, &tw, &rw, dw))) return st;
    if (tx != TB_ELEM_FLOAT) return th_error(api, "input X must be float32, got ", tb_elem_name(tx));
    if (rx == 0 || dx[rx - 1] != k->K) {
        tb_shape_str(dx, rx, shape, sizeof shape);
        snprintf(detail, sizeof detail, "%s but attribute K=%lld", shape, (long long)k->K);
        return th_error(api, "input X must have shape [..., K]: X has shape ", detail);
    }
    if (tw != TB_ELEM_FLOAT16) return th_error(api, "input W must be float16, got ", tb_elem_name(tw));
    if (rw != 2 || dw[0] != k->N || dw[1] != k->K) {
        tb_shape_str(dw, rw, shape, sizeof shape);
        snprintf(detail, sizeof detail, "%s but attributes N=%lld, K=%lld", shape, (long long)k->N, (long long)k->K);
        return th_error(api, "input W must have shape [N, K]: W has shape ", detail);
    }
    size_t M = 1;
    for (size_t i = 0; i + 1 < rx; i++) M *= (size_t)dx[i];
    int64_t dy[TB_MAX_RANK];
    memcpy(dy, dx, rx * sizeof *dx);
    dy[rx - 1] = k->N;
    OrtValue *vy;
    if ((st = API(api, KernelContext_GetOutput)(ctx, 0, dy, rx, &vy))) return st;
    if (M == 0) return NULL;
    void *px, *pw, *py;
    if ((st = API(api, GetTensorMutableData)((OrtValue *)vx, &px))) return st;
    if ((st = API(api, GetTensorMutableData)((OrtValue *)vw, &pw))) return st;
    if ((st = API(api, GetTensorMutableData)(vy, &py))) return st;
    tb_ort_runner runner = {api, ctx};
    if (th_matmul(px, M, (size_t)k->K, pw, (size_t)k->N, py, tb_ort_parallel_for, &runner))
        return API(api, CreateStatus)(ORT_FAIL, "F16MatMul: the thread pool failed");
    return NULL;
}

static OrtStatus *th_compute_clocked(void *kernel, OrtKernelContext *ctx) { return tb_clocked(th_compute, kernel, ctx); }

static const char *th_op_name(const OrtCustomOp *op) { (void)op; return "F16MatMul"; }
static size_t th_input_count(const OrtCustomOp *op) { (void)op; return 2; }

static const OrtCustomOp th_op = {
    .version = TB_ORT_API_VERSION,
    .CreateKernel = NULL,
    .GetName = th_op_name,
    .GetExecutionProviderType = tb_op_ep,
    .GetInputType = tb_input_type,
    .GetInputTypeCount = th_input_count,
    .GetOutputType = tb_output_type,
    .GetOutputTypeCount = tb_output_count,
    .KernelCompute = NULL,
    .KernelDestroy = tb_destroy_kernel,
    .GetInputCharacteristic = tb_required,
    .GetOutputCharacteristic = tb_required,
    .GetInputMemoryType = tb_mem_default,
    .GetVariadicInputMinArity = tb_one,
    .GetVariadicInputHomogeneity = tb_one,
    .GetVariadicOutputMinArity = tb_one,
    .GetVariadicOutputHomogeneity = tb_one,
    .CreateKernelV2 = th_create_kernel,
    .KernelComputeV2 = th_compute_clocked,
    .InferOutputShapeFn = NULL,
    .GetStartVersion = tb_one,
    .GetEndVersion = tb_end_version,
};

TB_EXPORT OrtStatus *RegisterCustomOps(OrtSessionOptions *options, const OrtApiBase *base) {
    const OrtApi *api = base->GetApi(TB_ORT_API_VERSION);
    if (!api) return NULL; /* onnxruntime older than 1.17: nothing we can report through */
    OrtCustomOpDomain *domain;
    OrtStatus *st = API(api, CreateCustomOpDomain)("tritbench", &domain);
    if (!st) st = API(api, CustomOpDomain_Add)(domain, &tb_op);
    if (!st) st = API(api, CustomOpDomain_Add)(domain, &th_op);
    if (!st) st = API(api, AddCustomOpDomain)(options, domain);
    return st;
}
