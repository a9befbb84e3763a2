/* The few pieces of onnxruntime's C ABI this library uses, declared here because no onnxruntime headers
 * are installable on the target machines. The OrtApi is an append-only table of function pointers:
 * slot numbers never move between releases (see /work/shared/notes/onnxruntime.md). We ask for API
 * version 17, the first with KernelContext_ParallelFor, so one build runs on onnxruntime 1.17 onwards. */
#ifndef TRITBENCH_ORT_ABI_H
#define TRITBENCH_ORT_ABI_H

#include <stddef.h>
#include <stdint.h>

#define TB_ORT_API_VERSION 17

typedef struct OrtStatus OrtStatus;
typedef struct OrtApi OrtApi;
typedef struct OrtValue OrtValue;
typedef struct OrtKernelInfo OrtKernelInfo;
typedef struct OrtKernelContext OrtKernelContext;
typedef struct OrtSessionOptions OrtSessionOptions;
typedef struct OrtCustomOpDomain OrtCustomOpDomain;
typedef struct OrtTensorTypeAndShapeInfo OrtTensorTypeAndShapeInfo;
typedef struct OrtShapeInferContext OrtShapeInferContext;

typedef struct OrtApiBase {
    const OrtApi *(*GetApi)(uint32_t version);
    const char *(*GetVersionString)(void);
} OrtApiBase;

enum { ORT_OK = 0, ORT_FAIL = 1, ORT_INVALID_ARGUMENT = 2, ORT_RUNTIME_EXCEPTION = 6 };
enum { TB_ELEM_UNDEFINED = 0, TB_ELEM_FLOAT = 1, TB_ELEM_UINT8 = 2, TB_ELEM_INT32 = 6, TB_ELEM_FLOAT16 = 10 };
enum { TB_INPUT_OUTPUT_REQUIRED = 0, TB_INPUT_OUTPUT_OPTIONAL = 1 };
enum { TB_MEM_TYPE_DEFAULT = 0 };

/* Slots of the OrtApi table used here. */
enum {
    SLOT_CreateStatus = 0,
    SLOT_GetErrorMessage = 2,
    SLOT_CreateCustomOpDomain = 26,
    SLOT_CustomOpDomain_Add = 27,
    SLOT_AddCustomOpDomain = 28,
    SLOT_GetTensorMutableData = 51,
    SLOT_GetTensorElementType = 60,
    SLOT_GetDimensionsCount = 61,
    SLOT_GetDimensions = 62,
    SLOT_GetTensorTypeAndShape = 65,
    SLOT_KernelInfoGetAttribute_float = 85,
    SLOT_KernelInfoGetAttribute_int64 = 86,
    SLOT_KernelInfoGetAttribute_string = 87,
    SLOT_KernelContext_GetInputCount = 88,
    SLOT_KernelContext_GetInput = 90,
    SLOT_KernelContext_GetOutput = 91,
    SLOT_ReleaseStatus = 93,
    SLOT_ReleaseTensorTypeAndShapeInfo = 99,
    SLOT_ShapeInferContext_GetInputTypeShape = 268,
    SLOT_ShapeInferContext_SetOutputTypeShape = 270,
    SLOT_KernelContext_ParallelFor = 274,
};

typedef OrtStatus *(*fn_CreateStatus)(int code, const char *msg);
typedef const char *(*fn_GetErrorMessage)(const OrtStatus *status);
typedef OrtStatus *(*fn_CreateCustomOpDomain)(const char *domain, OrtCustomOpDomain **out);
typedef OrtStatus *(*fn_CustomOpDomain_Add)(OrtCustomOpDomain *domain, const void *op);
typedef OrtStatus *(*fn_AddCustomOpDomain)(OrtSessionOptions *options, OrtCustomOpDomain *domain);
typedef OrtStatus *(*fn_GetTensorMutableData)(OrtValue *value, void **out);
typedef OrtStatus *(*fn_GetTensorElementType)(const OrtTensorTypeAndShapeInfo *info, int *out);
typedef OrtStatus *(*fn_GetDimensionsCount)(const OrtTensorTypeAndShapeInfo *info, size_t *out);
typedef OrtStatus *(*fn_GetDimensions)(const OrtTensorTypeAndShapeInfo *info, int64_t *dims, size_t count);
typedef OrtStatus *(*fn_GetTensorTypeAndShape)(const OrtValue *value, OrtTensorTypeAndShapeInfo **out);
typedef OrtStatus *(*fn_KernelInfoGetAttribute_float)(const OrtKernelInfo *info, const char *name, float *out);
typedef OrtStatus *(*fn_KernelInfoGetAttribute_int64)(const OrtKernelInfo *info, const char *name, int64_t *out);
typedef OrtStatus *(*fn_KernelInfoGetAttribute_string)(const OrtKernelInfo *info, const char *name, char *out,
                                                       size_t *size);
typedef OrtStatus *(*fn_KernelContext_GetInputCount)(const OrtKernelContext *ctx, size_t *out);
typedef OrtStatus *(*fn_KernelContext_GetInput)(const OrtKernelContext *ctx, size_t index, const OrtValue **out);
typedef OrtStatus *(*fn_KernelContext_GetOutput)(OrtKernelContext *ctx, size_t index, const int64_t *dims,
                                                 size_t count, OrtValue **out);
typedef void (*fn_ReleaseStatus)(OrtStatus *status);
typedef void (*fn_ReleaseTensorTypeAndShapeInfo)(OrtTensorTypeAndShapeInfo *info);
/* the context owns the info it hands out */
typedef OrtStatus *(*fn_ShapeInferContext_GetInputTypeShape)(const OrtShapeInferContext *ctx, size_t index,
                                                             OrtTensorTypeAndShapeInfo **info);
typedef OrtStatus *(*fn_ShapeInferContext_SetOutputTypeShape)(const OrtShapeInferContext *ctx, size_t index,
                                                              const OrtTensorTypeAndShapeInfo *info);
typedef OrtStatus *(*fn_KernelContext_ParallelFor)(const OrtKernelContext *ctx, void (*fn)(void *, size_t),
                                                   size_t total, size_t num_batch, void *user);

/* OrtCustomOp: a version number, then callbacks in this order. onnxruntime reads only the members that
 * exist for the declared version (CreateKernelV2/KernelComputeV2 from 16, InferOutputShapeFn and
 * Get{Start,End}Version from 17). */
typedef struct OrtCustomOp {
    uint32_t version;
    void *(*CreateKernel)(const struct OrtCustomOp *op, const OrtApi *api, const OrtKernelInfo *info);
    const char *(*GetName)(const struct OrtCustomOp *op);
    const char *(*GetExecutionProviderType)(const struct OrtCustomOp *op);
    int (*GetInputType)(const struct OrtCustomOp *op, size_t index);
    size_t (*GetInputTypeCount)(const struct OrtCustomOp *op);
    int (*GetOutputType)(const struct OrtCustomOp *op, size_t index);
    size_t (*GetOutputTypeCount)(const struct OrtCustomOp *op);
    void (*KernelCompute)(void *kernel, OrtKernelContext *ctx);
    void (*KernelDestroy)(void *kernel);
    int (*GetInputCharacteristic)(const struct OrtCustomOp *op, size_t index);
    int (*GetOutputCharacteristic)(const struct OrtCustomOp *op, size_t index);
    int (*GetInputMemoryType)(const struct OrtCustomOp *op, size_t index);
    int (*GetVariadicInputMinArity)(const struct OrtCustomOp *op);
    int (*GetVariadicInputHomogeneity)(const struct OrtCustomOp *op);
    int (*GetVariadicOutputMinArity)(const struct OrtCustomOp *op);
    int (*GetVariadicOutputHomogeneity)(const struct OrtCustomOp *op);
    OrtStatus *(*CreateKernelV2)(const struct OrtCustomOp *op, const OrtApi *api, const OrtKernelInfo *info,
                                 void **kernel);
    OrtStatus *(*KernelComputeV2)(void *kernel, OrtKernelContext *ctx);
    OrtStatus *(*InferOutputShapeFn)(const struct OrtCustomOp *op, OrtShapeInferContext *ctx);
    int (*GetStartVersion)(const struct OrtCustomOp *op);
    int (*GetEndVersion)(const struct OrtCustomOp *op);
    void *GetMayInplace;
    void *ReleaseMayInplace;
    void *GetAliasMap;
    void *ReleaseAliasMap;
} OrtCustomOp;

#endif
