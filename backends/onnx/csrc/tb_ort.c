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
 * Their inputs are declared type-polymorphic so that a wrong dtype reaches KernelCompute and fails with the
 * op's own message instead of a generic type error.
 * and tritbench.GroupQueryAttention (opset 1), the subset of com.microsoft.GroupQueryAttention a decoder of
 * batch 1 uses, with its inputs, outputs and attributes (tb_attn.c):
 *   inputs  query float [B, S, (num_heads + 2 kv_num_heads) head_size] (packed Q|K|V; key and value absent),
 *           past_key, past_value float or float16 [B, kv_num_heads, positions, head_size], seqlens_k int32 [B]
 *           (tokens in the cache after this call, minus 1), total_sequence_length int32, cos_cache and
 *           sin_cache float [positions, rotary dims / 2] (with do_rotary)
 *   attrs   num_heads, kv_num_heads, do_rotary, rotary_interleaved, scale (default 1 / sqrt(head_size))
 *   outputs output float [B, S, num_heads head_size], present_key, present_value (past's shape and type)
 * A present bound to the same buffer as its past is written in place: the new rows only.
 *
 * The ops' own clock (tritbench_op_clock_start / _stop): the wall time spent inside their KernelCompute calls,
 * summed, so that the matmul share of an unprofiled decode step can be measured (onnxruntime's profiler costs
 * about a millisecond per 1b step itself). Off, it costs one relaxed atomic load per call. */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ort_abi.h"
#include "tb_attn.h"
#include "tb_driver.h"
#include "tb_f16.h"

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

/* ---- GroupQueryAttention ---- */

static const OrtApi *ta_api; /* for shape inference, which gets no kernel; set at registration */

typedef struct {
    const OrtApi *api;
    int64_t heads, kv_heads, rotary, interleaved;
    float scale;
} ta_kernel;

static OrtStatus *ta_error(const OrtApi *api, const char *what, const char *detail) {
    char msg[512];
    snprintf(msg, sizeof msg, "GroupQueryAttention: %s%s", what, detail ? detail : "");
    return API(api, CreateStatus)(ORT_INVALID_ARGUMENT, msg);
}

/* An optional int attribute: its value, or `absent` when the node does not set it. */
static int64_t ta_int_attr(const OrtApi *api, const OrtKernelInfo *info, const char *name, int64_t absent) {
    int64_t v;
    OrtStatus *st = API(api, KernelInfoGetAttribute_int64)(info, name, &v);
    if (!st) return v;
    API(api, ReleaseStatus)(st);
    return absent;
}

static OrtStatus *ta_create_kernel(const OrtCustomOp *op, const OrtApi *api, const OrtKernelInfo *info,
                                   void **out) {
    (void)op;
    ta_kernel k = {.api = api};
    k.heads = ta_int_attr(api, info, "num_heads", 0);
    k.kv_heads = ta_int_attr(api, info, "kv_num_heads", 0);
    if (k.heads < 1 || k.kv_heads < 1 || k.heads % k.kv_heads)
        return ta_error(api, "num_heads and kv_num_heads must be positive, num_heads a multiple of kv_num_heads",
                        NULL);
    k.rotary = ta_int_attr(api, info, "do_rotary", 0);
    k.interleaved = ta_int_attr(api, info, "rotary_interleaved", 0);
    /* the parts of com.microsoft.GroupQueryAttention this op leaves out must not be asked for */
    if (ta_int_attr(api, info, "local_window_size", -1) != -1)
        return ta_error(api, "local_window_size (sliding-window attention) is not supported", NULL);
    float v = 0.0f;
    OrtStatus *st = API(api, KernelInfoGetAttribute_float)(info, "softcap", &v);
    if (st) API(api, ReleaseStatus)(st);
    else if (v != 0.0f) return ta_error(api, "softcap is not supported", NULL);
    st = API(api, KernelInfoGetAttribute_float)(info, "scale", &k.scale);
    if (st) {
        API(api, ReleaseStatus)(st);
        k.scale = 0.0f; /* 1 / sqrt(head size), once the head size is known */
    }
    ta_kernel *heap = malloc(sizeof k);
    if (!heap) return ta_error(api, "out of memory", NULL);
    *heap = k;
    *out = heap;
    return NULL;
}

/* Input i, its element type and its shape; a missing optional input gives *v = NULL. */
static OrtStatus *ta_input(const OrtApi *api, OrtKernelContext *ctx, size_t i, const OrtValue **v, int *type,
                           size_t *rank, int64_t *dims) {
    OrtStatus *st = API(api, KernelContext_GetInput)(ctx, i, v);
    if (st || !*v) return st;
    return tb_describe(api, *v, type, rank, dims);
}

static OrtStatus *ta_compute(void *kernel, OrtKernelContext *ctx) {
    const ta_kernel *k = kernel;
    const OrtApi *api = k->api;
    OrtStatus *st;
    char detail[320], shape[200];
    const OrtValue *vin[9] = {0};
    int type[9] = {0};
    size_t rank[9] = {0}, count;
    int64_t dims[9][TB_MAX_RANK];
    if ((st = API(api, KernelContext_GetInputCount)(ctx, &count))) return st;
    for (size_t i = 0; i < 9 && i < count; i++)
        if ((st = ta_input(api, ctx, i, &vin[i], &type[i], &rank[i], dims[i]))) return st;
    if (vin[1] || vin[2])
        return ta_error(api, "separate key and value inputs are not supported: pack Q, K and V into query", NULL);
    if (!vin[0] || !vin[3] || !vin[4] || !vin[5] || !vin[6])
        return ta_error(api, "needs query, past_key, past_value, seqlens_k and total_sequence_length", NULL);
    size_t H = (size_t)k->heads, KVH = (size_t)k->kv_heads;
    if (rank[0] != 3 || dims[0][2] % (int64_t)(H + 2 * KVH)) {
        tb_shape_str(dims[0], rank[0], shape, sizeof shape);
        return ta_error(api, "query must be packed Q|K|V of shape [batch, tokens, (num_heads + 2 kv_num_heads) "
                        "head_size], got ", shape);
    }
    size_t B = (size_t)dims[0][0], S = (size_t)dims[0][1], D = (size_t)dims[0][2] / (H + 2 * KVH);
    int kv = type[3];
    if ((kv != TB_ELEM_FLOAT && kv != TB_ELEM_FLOAT16) || type[4] != kv)
        return ta_error(api, "past_key and past_value must both be float32 or both float16", NULL);
    for (int i = 3; i <= 4; i++)
        if (rank[i] != 4 || dims[i][0] != (int64_t)B || dims[i][1] != (int64_t)KVH || dims[i][3] != (int64_t)D ||
            dims[i][2] != dims[3][2]) {
            tb_shape_str(dims[i], rank[i], shape, sizeof shape);
            snprintf(detail, sizeof detail, "%s, want [%zu, %zu, positions, %zu] for both", shape, B, KVH, D);
            return ta_error(api, "a KV cache (past_key, past_value) has shape ", detail);
        }
    size_t P = (size_t)dims[3][2];
    if (type[5] != TB_ELEM_INT32 || type[6] != TB_ELEM_INT32)
        return ta_error(api, "seqlens_k and total_sequence_length must be int32", NULL);
    size_t rot = 0;
    const float *cs = NULL, *sn = NULL;
    if (k->rotary) {
        if (!vin[7] || !vin[8] || type[7] != TB_ELEM_FLOAT || type[8] != TB_ELEM_FLOAT || rank[7] != 2 ||
            rank[8] != 2 || dims[7][0] != dims[8][0] || dims[7][1] != dims[8][1] || 2 * dims[7][1] > (int64_t)D)
            return ta_error(api, "do_rotary needs float32 cos_cache and sin_cache of one shape [positions, "
                            "rotary dims / 2] with rotary dims <= head size", NULL);
        rot = 2 * (size_t)dims[7][1];
        void *pc, *ps;
        if ((st = API(api, GetTensorMutableData)((OrtValue *)vin[7], &pc)) ||
            (st = API(api, GetTensorMutableData)((OrtValue *)vin[8], &ps)))
            return st;
        cs = pc, sn = ps;
    }
    void *pq, *pk, *pv, *pseq;
    if ((st = API(api, GetTensorMutableData)((OrtValue *)vin[0], &pq)) ||
        (st = API(api, GetTensorMutableData)((OrtValue *)vin[3], &pk)) ||
        (st = API(api, GetTensorMutableData)((OrtValue *)vin[4], &pv)) ||
        (st = API(api, GetTensorMutableData)((OrtValue *)vin[5], &pseq)))
        return st;
    size_t *past = malloc((B ? B : 1) * sizeof *past);
    if (!past) return ta_error(api, "out of memory", NULL);
    for (size_t b = 0; b < B; b++) { /* seqlens_k[b] + 1 tokens in row b once this call's are added */
        int64_t total = (int64_t)((const int32_t *)pseq)[b] + 1, first = total - (int64_t)S;
        if (first < 0 || total > (int64_t)P || (rot && total > dims[7][0])) {
            free(past);
            snprintf(detail, sizeof detail, "%lld tokens (seqlens_k + 1) in row %zu with %zu new, %zu cache "
                     "positions%s", (long long)total, b, S, P, rot ? " and as many rotary positions" : "");
            return ta_error(api, "the cache cannot hold ", detail);
        }
        past[b] = (size_t)first;
    }
    int64_t dout[3] = {(int64_t)B, (int64_t)S, (int64_t)(H * D)};
    OrtValue *vo, *vpk, *vpv;
    void *po, *ppk, *ppv;
    if ((st = API(api, KernelContext_GetOutput)(ctx, 0, dout, 3, &vo)) ||
        (st = API(api, KernelContext_GetOutput)(ctx, 1, dims[3], 4, &vpk)) ||
        (st = API(api, KernelContext_GetOutput)(ctx, 2, dims[4], 4, &vpv)) ||
        (st = API(api, GetTensorMutableData)(vo, &po)) || (st = API(api, GetTensorMutableData)(vpk, &ppk)) ||
        (st = API(api, GetTensorMutableData)(vpv, &ppv))) {
        free(past);
        return st;
    }
    /* present shares past's buffer when the caller binds one tensor to both (no copy per token); else the
     * past is copied over first */
    size_t cache_bytes = B * KVH * P * D * (kv == TB_ELEM_FLOAT16 ? 2 : 4);
    if (ppk != pk) memcpy(ppk, pk, cache_bytes);
    if (ppv != pv) memcpy(ppv, pv, cache_bytes);
    tb_attn_args a = {B, S, H, KVH, D, P, rot, (int)k->interleaved, kv == TB_ELEM_FLOAT16,
                      k->scale != 0.0f ? k->scale : 1.0f / sqrtf((float)D), pq, ppk, ppv, past, cs, sn, po};
    const tb_kernels *kern = tb_select(detail, sizeof detail);
    int failed = !kern;
    tb_ort_runner runner = {api, ctx};
    if (kern) failed = tb_attention(kern, &a, tb_ort_parallel_for, &runner, detail, sizeof detail);
    free(past);
    return failed ? API(api, CreateStatus)(ORT_FAIL, detail) : NULL;
}

static const char *ta_op_name(const OrtCustomOp *op) { (void)op; return "GroupQueryAttention"; }
static size_t ta_input_count(const OrtCustomOp *op) { (void)op; return 9; }
static size_t ta_output_count(const OrtCustomOp *op) { (void)op; return 3; }
/* the caches are float32 or float16, and the present outputs take the type of the past inputs */
static int ta_input_type(const OrtCustomOp *op, size_t i) {
    (void)op;
    return i == 3 || i == 4 ? TB_ELEM_UNDEFINED : i == 5 || i == 6 ? TB_ELEM_INT32 : TB_ELEM_FLOAT;
}
static int ta_output_type(const OrtCustomOp *op, size_t i) { (void)op; return i ? TB_ELEM_UNDEFINED : TB_ELEM_FLOAT; }
static int ta_input_required(const OrtCustomOp *op, size_t i) {
    (void)op;
    return i == 1 || i == 2 || i >= 7 ? TB_INPUT_OUTPUT_OPTIONAL : TB_INPUT_OUTPUT_REQUIRED;
}

/* present_key and present_value: past_key's and past_value's type and shape (onnxruntime infers the type of
 * a dynamically typed output by itself only when one input is dynamically typed) */
static OrtStatus *ta_infer(const OrtCustomOp *op, OrtShapeInferContext *ctx) {
    (void)op;
    const OrtApi *api = ta_api;
    for (size_t i = 1; i <= 2; i++) {
        OrtTensorTypeAndShapeInfo *info;
        OrtStatus *st = API(api, ShapeInferContext_GetInputTypeShape)(ctx, i + 2, &info);
        if (!st) st = API(api, ShapeInferContext_SetOutputTypeShape)(ctx, i, info);
        if (st) return st;
    }
    return NULL;
}

static const OrtCustomOp ta_op = {
    .version = TB_ORT_API_VERSION,
    .CreateKernel = NULL,
    .GetName = ta_op_name,
    .GetExecutionProviderType = tb_op_ep,
    .GetInputType = ta_input_type,
    .GetInputTypeCount = ta_input_count,
    .GetOutputType = ta_output_type,
    .GetOutputTypeCount = ta_output_count,
    .KernelCompute = NULL,
    .KernelDestroy = tb_destroy_kernel,
    .GetInputCharacteristic = ta_input_required,
    .GetOutputCharacteristic = tb_required,
    .GetInputMemoryType = tb_mem_default,
    .GetVariadicInputMinArity = tb_one,
    .GetVariadicInputHomogeneity = tb_one,
    .GetVariadicOutputMinArity = tb_one,
    .GetVariadicOutputHomogeneity = tb_one,
    .CreateKernelV2 = ta_create_kernel,
    .KernelComputeV2 = ta_compute, /* not on the ops' clock, which times matmuls */
    .InferOutputShapeFn = ta_infer,
    .GetStartVersion = tb_one,
    .GetEndVersion = tb_end_version,
};

TB_EXPORT OrtStatus *RegisterCustomOps(OrtSessionOptions *options, const OrtApiBase *base) {
    const OrtApi *api = base->GetApi(TB_ORT_API_VERSION);
    if (!api) return NULL; /* onnxruntime older than 1.17: nothing we can report through */
    ta_api = api;
    OrtCustomOpDomain *domain;
    OrtStatus *st = API(api, CreateCustomOpDomain)("tritbench", &domain);
    if (!st) st = API(api, CustomOpDomain_Add)(domain, &tb_op);
    if (!st) st = API(api, CustomOpDomain_Add)(domain, &th_op);
    if (!st) st = API(api, CustomOpDomain_Add)(domain, &ta_op);
    if (!st) st = API(api, AddCustomOpDomain)(options, domain);
    return st;
}
