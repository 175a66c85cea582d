"""ONNX Runtime's C API through ctypes: just enough to run a graph on the CPU EP or on an EP appended by name
(WebGPU), from Python, with the libonnxruntime.so.1 that onnxruntime-node ships.

Why not the `onnxruntime` Python package: its wheels carry no WebGPU EP; onnxruntime-node 1.30's library does
(Dawn on Vulkan), and the GPU machine has Python but no Node.js (shared/reference/gpu-webgpu.md). Driving that
library directly keeps the carried payload to one .so.

The OrtApi struct is a table of function pointers in a fixed, append-only order (the ABI of
include/onnxruntime/core/session/onnxruntime_c_api.h). We ask GetApi for API_VERSION 13 (ORT 1.13), whose
first 217 entries are listed in _ORDER; a newer library returns the same table with more entries appended, so
these indices stay valid. A wrong index calls the wrong function and usually crashes: `self_check()` exercises
entries spread over the table (low, middle and the last one we use) with harmless calls whose answers are
known, and the constructor runs it unless told not to.

    from ort_capi import Runtime
    rt = Runtime()                      # ORT_CAPI_LIB or node_modules/onnxruntime-node/... by default
    s = rt.session("reward.onnx", provider="WebGPU", intra_op_threads=0, log_placement=True)
    out = s.run({"input_ids": ids, ...})  # {name: numpy array}
    s.placement                          # {ep: node count}, from ORT's verbose "Node placements" log
"""
from __future__ import annotations

import ctypes as C
import os
import re
from typing import Dict, List, Optional, Sequence

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_LIB = os.path.join(REPO, "node_modules", "onnxruntime-node", "bin", "napi-v6", "linux", "x64",
                           "libonnxruntime.so.1")
ENV_LIB = "ORT_CAPI_LIB"
API_VERSION = 13

# OrtApi entries 0..216 in ABI order (API version 13). Names only; the position is the index.
_ORDER = """
CreateStatus GetErrorCode GetErrorMessage CreateEnv CreateEnvWithCustomLogger EnableTelemetryEvents
DisableTelemetryEvents CreateSession CreateSessionFromArray Run CreateSessionOptions SetOptimizedModelFilePath
CloneSessionOptions SetSessionExecutionMode EnableProfiling DisableProfiling EnableMemPattern DisableMemPattern
EnableCpuMemArena DisableCpuMemArena SetSessionLogId SetSessionLogVerbosityLevel SetSessionLogSeverityLevel
SetSessionGraphOptimizationLevel SetIntraOpNumThreads SetInterOpNumThreads CreateCustomOpDomain
CustomOpDomain_Add AddCustomOpDomain RegisterCustomOpsLibrary SessionGetInputCount SessionGetOutputCount
SessionGetOverridableInitializerCount SessionGetInputTypeInfo SessionGetOutputTypeInfo
SessionGetOverridableInitializerTypeInfo SessionGetInputName SessionGetOutputName
SessionGetOverridableInitializerName CreateRunOptions RunOptionsSetRunLogVerbosityLevel
RunOptionsSetRunLogSeverityLevel RunOptionsSetRunTag RunOptionsGetRunLogVerbosityLevel
RunOptionsGetRunLogSeverityLevel RunOptionsGetRunTag RunOptionsSetTerminate RunOptionsUnsetTerminate
CreateTensorAsOrtValue CreateTensorWithDataAsOrtValue IsTensor GetTensorMutableData FillStringTensor
GetStringTensorDataLength GetStringTensorContent CastTypeInfoToTensorInfo GetOnnxTypeFromTypeInfo
CreateTensorTypeAndShapeInfo SetTensorElementType SetDimensions GetTensorElementType GetDimensionsCount
GetDimensions GetSymbolicDimensions GetTensorShapeElementCount GetTensorTypeAndShape GetTypeInfo GetValueType
CreateMemoryInfo CreateCpuMemoryInfo CompareMemoryInfo MemoryInfoGetName MemoryInfoGetId MemoryInfoGetMemType
MemoryInfoGetType AllocatorAlloc AllocatorFree AllocatorGetInfo GetAllocatorWithDefaultOptions
AddFreeDimensionOverride GetValue GetValueCount CreateValue CreateOpaqueValue GetOpaqueValue
KernelInfoGetAttribute_float KernelInfoGetAttribute_int64 KernelInfoGetAttribute_string
KernelContext_GetInputCount KernelContext_GetOutputCount KernelContext_GetInput KernelContext_GetOutput
ReleaseEnv ReleaseStatus ReleaseMemoryInfo ReleaseSession ReleaseValue ReleaseRunOptions ReleaseTypeInfo
ReleaseTensorTypeAndShapeInfo ReleaseSessionOptions ReleaseCustomOpDomain GetDenotationFromTypeInfo
CastTypeInfoToMapTypeInfo CastTypeInfoToSequenceTypeInfo GetMapKeyType GetMapValueType GetSequenceElementType
ReleaseMapTypeInfo ReleaseSequenceTypeInfo SessionEndProfiling SessionGetModelMetadata
ModelMetadataGetProducerName ModelMetadataGetGraphName ModelMetadataGetDomain ModelMetadataGetDescription
ModelMetadataLookupCustomMetadataMap ModelMetadataGetVersion ReleaseModelMetadata CreateEnvWithGlobalThreadPools
DisablePerSessionThreads CreateThreadingOptions ReleaseThreadingOptions ModelMetadataGetCustomMetadataMapKeys
AddFreeDimensionOverrideByName GetAvailableProviders ReleaseAvailableProviders GetStringTensorElementLength
GetStringTensorElement FillStringTensorElement AddSessionConfigEntry CreateAllocator ReleaseAllocator
RunWithBinding CreateIoBinding ReleaseIoBinding BindInput BindOutput BindOutputToDevice GetBoundOutputNames
GetBoundOutputValues ClearBoundInputs ClearBoundOutputs TensorAt CreateAndRegisterAllocator
SetLanguageProjection SessionGetProfilingStartTimeNs SetGlobalIntraOpNumThreads SetGlobalInterOpNumThreads
SetGlobalSpinControl AddInitializer CreateEnvWithCustomLoggerAndGlobalThreadPools
SessionOptionsAppendExecutionProvider_CUDA SessionOptionsAppendExecutionProvider_ROCM
SessionOptionsAppendExecutionProvider_OpenVINO SetGlobalDenormalAsZero CreateArenaCfg ReleaseArenaCfg
ModelMetadataGetGraphDescription SessionOptionsAppendExecutionProvider_TensorRT SetCurrentGpuDeviceId
GetCurrentGpuDeviceId KernelInfoGetAttributeArray_float KernelInfoGetAttributeArray_int64 CreateArenaCfgV2
AddRunConfigEntry CreatePrepackedWeightsContainer ReleasePrepackedWeightsContainer
CreateSessionWithPrepackedWeightsContainer CreateSessionFromArrayWithPrepackedWeightsContainer
SessionOptionsAppendExecutionProvider_TensorRT_V2 CreateTensorRTProviderOptions UpdateTensorRTProviderOptions
GetTensorRTProviderOptionsAsString ReleaseTensorRTProviderOptions EnableOrtCustomOps RegisterAllocator
UnregisterAllocator IsSparseTensor CreateSparseTensorAsOrtValue FillSparseTensorCoo FillSparseTensorCsr
FillSparseTensorBlockSparse CreateSparseTensorWithValuesAsOrtValue UseCooIndices UseCsrIndices
UseBlockSparseIndices GetSparseTensorFormat GetSparseTensorValuesTypeAndShape GetSparseTensorValues
GetSparseTensorIndicesTypeShape GetSparseTensorIndices HasValue KernelContext_GetGPUComputeStream
GetTensorMemoryInfo GetExecutionProviderApi SessionOptionsSetCustomCreateThreadFn
SessionOptionsSetCustomThreadCreationOptions SessionOptionsSetCustomJoinThreadFn SetGlobalCustomCreateThreadFn
SetGlobalCustomThreadCreationOptions SetGlobalCustomJoinThreadFn SynchronizeBoundInputs SynchronizeBoundOutputs
SessionOptionsAppendExecutionProvider_CUDA_V2 CreateCUDAProviderOptions UpdateCUDAProviderOptions
GetCUDAProviderOptionsAsString ReleaseCUDAProviderOptions SessionOptionsAppendExecutionProvider_MIGraphX
AddExternalInitializers CreateOpAttr ReleaseOpAttr CreateOp InvokeOp ReleaseOp SessionOptionsAppendExecutionProvider
""".split()
INDEX = {n: i for i, n in enumerate(_ORDER)}

P, I, SZ, S = C.c_void_p, C.c_int, C.c_size_t, C.c_char_p
PP = C.POINTER(C.c_void_p)
ST = C.c_void_p  # OrtStatus*: NULL on success
LOGFN = C.CFUNCTYPE(None, C.c_void_p, C.c_int, C.c_char_p, C.c_char_p, C.c_char_p, C.c_char_p)

# (restype, argtypes) of the entries used here
_SIG = {
    "CreateStatus": (ST, [I, S]),
    "GetErrorCode": (I, [ST]),
    "GetErrorMessage": (S, [ST]),
    "CreateEnv": (ST, [I, S, PP]),
    "CreateEnvWithCustomLogger": (ST, [LOGFN, P, I, S, PP]),
    "DisableTelemetryEvents": (ST, [P]),
    "CreateSession": (ST, [P, S, P, PP]),
    "Run": (ST, [P, P, C.POINTER(S), PP, SZ, C.POINTER(S), SZ, PP]),
    "CreateSessionOptions": (ST, [PP]),
    "CreateRunOptions": (ST, [PP]),
    "RunOptionsSetRunLogSeverityLevel": (ST, [P, I]),
    "ReleaseRunOptions": (None, [P]),
    "SetSessionLogVerbosityLevel": (ST, [P, I]),
    "SetSessionLogSeverityLevel": (ST, [P, I]),
    "SetSessionGraphOptimizationLevel": (ST, [P, I]),
    "SetIntraOpNumThreads": (ST, [P, I]),
    "SetInterOpNumThreads": (ST, [P, I]),
    "SessionGetInputCount": (ST, [P, C.POINTER(SZ)]),
    "SessionGetOutputCount": (ST, [P, C.POINTER(SZ)]),
    "SessionGetInputTypeInfo": (ST, [P, SZ, PP]),
    "SessionGetOutputTypeInfo": (ST, [P, SZ, PP]),
    "SessionGetInputName": (ST, [P, SZ, P, PP]),
    "SessionGetOutputName": (ST, [P, SZ, P, PP]),
    "CreateTensorAsOrtValue": (ST, [P, C.POINTER(C.c_int64), SZ, I, PP]),
    "CreateTensorWithDataAsOrtValue": (ST, [P, P, SZ, C.POINTER(C.c_int64), SZ, I, PP]),
    "IsTensor": (ST, [P, C.POINTER(I)]),
    "GetTensorMutableData": (ST, [P, PP]),
    "CastTypeInfoToTensorInfo": (ST, [P, PP]),
    "GetTensorElementType": (ST, [P, C.POINTER(I)]),
    "GetDimensionsCount": (ST, [P, C.POINTER(SZ)]),
    "GetDimensions": (ST, [P, C.POINTER(C.c_int64), SZ]),
    "GetTensorShapeElementCount": (ST, [P, C.POINTER(SZ)]),
    "GetTensorTypeAndShape": (ST, [P, PP]),
    "CreateCpuMemoryInfo": (ST, [I, I, PP]),
    "MemoryInfoGetName": (ST, [P, C.POINTER(S)]),
    "MemoryInfoGetId": (ST, [P, C.POINTER(I)]),
    "MemoryInfoGetMemType": (ST, [P, C.POINTER(I)]),
    "MemoryInfoGetType": (ST, [P, C.POINTER(I)]),
    "AllocatorFree": (ST, [P, P]),
    "GetAllocatorWithDefaultOptions": (ST, [PP]),
    "ReleaseEnv": (None, [P]),
    "ReleaseStatus": (None, [P]),
    "ReleaseMemoryInfo": (None, [P]),
    "ReleaseSession": (None, [P]),
    "ReleaseValue": (None, [P]),
    "ReleaseTypeInfo": (None, [P]),
    "ReleaseTensorTypeAndShapeInfo": (None, [P]),
    "ReleaseSessionOptions": (None, [P]),
    "GetAvailableProviders": (ST, [C.POINTER(C.POINTER(S)), C.POINTER(I)]),
    "ReleaseAvailableProviders": (ST, [C.POINTER(S), I]),
    "AddSessionConfigEntry": (ST, [P, S, S]),
    "SessionOptionsAppendExecutionProvider": (ST, [P, S, C.POINTER(S), C.POINTER(S), SZ]),
}

# ONNXTensorElementDataType <-> numpy
_DT = {1: np.float32, 2: np.uint8, 3: np.int8, 5: np.int16, 6: np.int32, 7: np.int64, 9: np.bool_, 10: np.float16,
       11: np.float64, 12: np.uint32, 13: np.uint64}
_NP = {np.dtype(v): k for k, v in _DT.items()}
OPT_LEVEL = {"disable": 0, "basic": 1, "extended": 2, "all": 99}
LOG_VERBOSE, LOG_INFO, LOG_WARNING, LOG_ERROR = 0, 1, 2, 3


class OrtError(RuntimeError):
    def __init__(self, fn: str, code: int, message: str):
        super().__init__(f"{fn}: ORT error {code}: {message}")
        self.fn, self.code, self.message = fn, code, message


class Runtime:
    """One loaded library, its OrtApi table and one OrtEnv (ORT allows a single env per process)."""

    def __init__(self, lib: Optional[str] = None, check: bool = True, log_level: int = LOG_WARNING):
        # ORT's telemetry writes an empty $TMPDIR/mat-debug-<pid>.log at start unless this is set before load
        # (the service and trainer/node/run_onnx.mjs do the same)
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
        self.lib_path = lib or os.environ.get(ENV_LIB) or DEFAULT_LIB
        if not os.path.exists(self.lib_path):
            raise FileNotFoundError(f"ONNX Runtime library not found: {self.lib_path} (set {ENV_LIB} or --lib)")
        self._lib = C.CDLL(self.lib_path)
        get_base = self._lib.OrtGetApiBase
        get_base.restype = C.POINTER(C.c_void_p * 2)  # OrtApiBase {GetApi, GetVersionString}
        base = get_base().contents
        self.version = C.CFUNCTYPE(C.c_char_p)(base[1])().decode()
        api = C.CFUNCTYPE(C.c_void_p, C.c_uint32)(base[0])(API_VERSION)
        if not api:
            raise RuntimeError(f"{self.lib_path} (ORT {self.version}) does not offer API version {API_VERSION}")
        self._table = C.cast(api, C.POINTER(C.c_void_p))
        self._fns: Dict[str, object] = {}
        self.log: List[tuple] = []  # (severity, logid, message) from the env's logger
        self._logfn = LOGFN(self._on_log)  # kept referenced: ORT calls it for the process's lifetime
        env = C.c_void_p()
        self.call("CreateEnvWithCustomLogger", self._logfn, None, log_level, b"ort_capi", C.byref(env))
        self.env = env
        self.call("DisableTelemetryEvents", self.env)
        alloc = C.c_void_p()
        self.call("GetAllocatorWithDefaultOptions", C.byref(alloc))
        self.allocator = alloc
        mi = C.c_void_p()
        self.call("CreateCpuMemoryInfo", 0, 0, C.byref(mi))  # OrtDeviceAllocator, OrtMemTypeDefault
        self.cpu_memory = mi
        if check:
            self.self_check()

    # -------------------------------------------------------------------------------------------- plumbing
    def fn(self, name: str):
        f = self._fns.get(name)
        if f is None:
            res, args = _SIG[name]
            f = C.CFUNCTYPE(res, *args)(self._table[INDEX[name]])
            self._fns[name] = f
        return f

    def call(self, name: str, *args) -> None:
        """Calls an OrtStatus-returning entry; a non-NULL status becomes OrtError with ORT's message."""
        st = self.fn(name)(*args)
        if st:
            code = self.fn("GetErrorCode")(st)
            msg = self.fn("GetErrorMessage")(st)
            msg = msg.decode(errors="replace") if msg else ""
            self.fn("ReleaseStatus")(st)
            raise OrtError(name, code, msg)

    def _on_log(self, param, severity, category, logid, location, message):
        try:
            if len(self.log) < 100000:  # bounded: a chatty EP must not grow memory without end
                self.log.append((severity, (logid or b"").decode(errors="replace"),
                                 (message or b"").decode(errors="replace")))
        except Exception:  # never raise into ORT's C++ frames
            pass

    def available_providers(self) -> List[str]:
        arr, n = C.POINTER(S)(), C.c_int()
        self.call("GetAvailableProviders", C.byref(arr), C.byref(n))
        try:
            return [arr[i].decode() for i in range(n.value)]
        finally:
            self.call("ReleaseAvailableProviders", arr, n)

    # ------------------------------------------------------------------------------------------ self-check
    def self_check(self) -> Dict[str, object]:
        """Harmless calls with known answers over the table's span (indices 0-2, 48-78, 93-99, 125-126, 216). A
        shifted index gives a wrong answer, an OrtError or a crash here instead of inside a benchmark."""
        rep: Dict[str, object] = {"version": self.version}
        # 0-2, 93: a status made by us comes back with its code and message
        st = self.fn("CreateStatus")(9, b"ort_capi self-check")
        assert st, "CreateStatus returned NULL"
        code, msg = self.fn("GetErrorCode")(st), self.fn("GetErrorMessage")(st)
        self.fn("ReleaseStatus")(st)
        assert (code, msg) == (9, b"ort_capi self-check"), f"status round trip gave {(code, msg)}"
        # 69-74: the CPU memory info we made answers its own name and settings
        name, mid, mt, at = C.c_char_p(), C.c_int(-1), C.c_int(-9), C.c_int(-9)
        self.call("MemoryInfoGetName", self.cpu_memory, C.byref(name))
        self.call("MemoryInfoGetId", self.cpu_memory, C.byref(mid))
        self.call("MemoryInfoGetMemType", self.cpu_memory, C.byref(mt))
        self.call("MemoryInfoGetType", self.cpu_memory, C.byref(at))
        assert (name.value, mid.value, mt.value, at.value) == (b"Cpu", 0, 0, 0), \
            f"memory info gave {(name.value, mid.value, mt.value, at.value)}"
        # 48-65, 96, 99: a tensor we create reports our shape and type; its data is writable and read back
        shape = (C.c_int64 * 3)(2, 3, 5)
        v = C.c_void_p()
        self.call("CreateTensorAsOrtValue", self.allocator, shape, 3, 7, C.byref(v))
        try:
            is_t = C.c_int(-1)
            self.call("IsTensor", v, C.byref(is_t))
            info = C.c_void_p()
            self.call("GetTensorTypeAndShape", v, C.byref(info))
            try:
                et, nd, cnt = C.c_int(), C.c_size_t(), C.c_size_t()
                self.call("GetTensorElementType", info, C.byref(et))
                self.call("GetDimensionsCount", info, C.byref(nd))
                dims = (C.c_int64 * 3)()
                self.call("GetDimensions", info, dims, 3)
                self.call("GetTensorShapeElementCount", info, C.byref(cnt))
            finally:
                self.fn("ReleaseTensorTypeAndShapeInfo")(info)
            assert (is_t.value, et.value, nd.value, list(dims), cnt.value) == (1, 7, 3, [2, 3, 5], 30), \
                f"tensor info gave {(is_t.value, et.value, nd.value, list(dims), cnt.value)}"
            ptr = C.c_void_p()
            self.call("GetTensorMutableData", v, C.byref(ptr))
            a = np.ctypeslib.as_array(C.cast(ptr, C.POINTER(C.c_int64)), shape=(30,))
            a[:] = np.arange(30)
            assert int(a.sum()) == 435
        finally:
            self.fn("ReleaseValue")(v)
        # 125-126: the provider list names the CPU EP
        provs = self.available_providers()
        assert "CPUExecutionProvider" in provs, f"GetAvailableProviders gave {provs}"
        rep["providers"] = provs
        # 10, 100, 216: appending an unknown EP by name is refused with ORT's message naming it
        so = C.c_void_p()
        self.call("CreateSessionOptions", C.byref(so))
        try:
            try:
                self.call("SessionOptionsAppendExecutionProvider", so, b"NoSuchEP", None, None, 0)
                raise AssertionError("SessionOptionsAppendExecutionProvider accepted 'NoSuchEP'")
            except OrtError as e:
                assert "NoSuchEP" in e.message, f"unexpected refusal: {e}"
        finally:
            self.fn("ReleaseSessionOptions")(so)
        rep["ok"] = True
        return rep

    # -------------------------------------------------------------------------------------------- sessions
    def session(self, path: str, provider: str = "CPU", provider_options: Optional[Dict[str, str]] = None,
                intra_op_threads: int = 0, opt_level: str = "all", config: Optional[Dict[str, str]] = None,
                log_placement: bool = False) -> "Session":
        return Session(self, path, provider, provider_options or {}, intra_op_threads, opt_level, config or {},
                       log_placement)

    def close(self) -> None:
        if getattr(self, "cpu_memory", None):
            self.fn("ReleaseMemoryInfo")(self.cpu_memory)
            self.cpu_memory = None
        if getattr(self, "env", None):
            self.fn("ReleaseEnv")(self.env)
            self.env = None


def _element_type_and_shape(rt: "Runtime", info) -> "tuple[int, tuple]":
    """Element type (ONNX enum) and shape of an OrtTensorTypeAndShapeInfo (a session input's or an output value's)."""
    et, nd = C.c_int(), C.c_size_t()
    rt.call("GetTensorElementType", info, C.byref(et))
    rt.call("GetDimensionsCount", info, C.byref(nd))
    dims = (C.c_int64 * max(1, nd.value))()
    rt.call("GetDimensions", info, dims, nd.value)
    return et.value, tuple(int(dims[j]) for j in range(nd.value))


_PLACED = re.compile(r"(?:All nodes|Node\(s\)) placed on \[(\w+)\]\. Number of nodes: (\d+)")
_NODE = re.compile(r"^\s+(\S+) \((.*)\)\s*$")


def parse_placement(messages: Sequence[str]) -> Dict[str, Dict[str, object]]:
    """ORT's verbose 'Node placements' log -> {ep: {"nodes": n, "ops": {op_type: count}}}."""
    out: Dict[str, Dict[str, object]] = {}
    cur = None
    for m in messages:
        for line in m.splitlines():
            h = _PLACED.search(line)
            if h:
                cur = h.group(1)
                out[cur] = {"nodes": int(h.group(2)), "ops": {}}
                continue
            n = _NODE.match(line)
            if n and cur is not None:
                ops = out[cur]["ops"]
                ops[n.group(1)] = ops.get(n.group(1), 0) + 1  # type: ignore[union-attr]
            elif line.strip() and not line.startswith(" "):
                cur = None
    return out


class Session:
    def __init__(self, rt: Runtime, path: str, provider: str, provider_options: Dict[str, str],
                 intra_op_threads: int, opt_level: str, config: Dict[str, str], log_placement: bool):
        self.rt, self.path, self.provider = rt, path, provider
        so = C.c_void_p()
        rt.call("CreateSessionOptions", C.byref(so))
        self.handle = C.c_void_p()
        try:
            rt.call("SetSessionGraphOptimizationLevel", so, OPT_LEVEL[opt_level])
            rt.call("SetIntraOpNumThreads", so, intra_op_threads)
            for k, v in config.items():
                rt.call("AddSessionConfigEntry", so, k.encode(), v.encode())
            if log_placement:
                # the placement summary is a verbose message of the session's own logger
                rt.call("SetSessionLogSeverityLevel", so, LOG_VERBOSE)
            if provider.lower() not in ("cpu", "cpuexecutionprovider"):
                keys = (S * max(1, len(provider_options)))(*[k.encode() for k in provider_options])
                vals = (S * max(1, len(provider_options)))(*[v.encode() for v in provider_options.values()])
                rt.call("SessionOptionsAppendExecutionProvider", so, provider.encode(), keys, vals,
                        len(provider_options))
            start = len(rt.log)
            try:
                rt.call("CreateSession", rt.env, os.fsencode(path), so, C.byref(self.handle))
            finally:
                logged = rt.log[start:]
                # ORT's own warnings (e.g. nodes left off the preferred EP), deduplicated and bounded
                self.warnings = list(dict.fromkeys(m[:500] for sev, _, m in logged if sev >= LOG_WARNING))[:20]
                if log_placement:
                    del rt.log[start:]  # verbose session logs are large; keep only what is parsed below
            self.placement = parse_placement([m for _, _, m in logged]) if log_placement else {}
        finally:
            rt.fn("ReleaseSessionOptions")(so)
        # runs log at WARNING whatever the session's level: a verbose message per run would cost a Python
        # callback inside the timed region
        self.run_options = C.c_void_p()
        rt.call("CreateRunOptions", C.byref(self.run_options))
        rt.call("RunOptionsSetRunLogSeverityLevel", self.run_options, LOG_WARNING)
        self.inputs = self._io("Input")
        self.outputs = self._io("Output")

    def _io(self, kind: str) -> List[Dict[str, object]]:
        rt = self.rt
        n = C.c_size_t()
        rt.call(f"SessionGet{kind}Count", self.handle, C.byref(n))
        res = []
        for i in range(n.value):
            p = C.c_void_p()
            rt.call(f"SessionGet{kind}Name", self.handle, i, rt.allocator, C.byref(p))
            name = C.string_at(p).decode()
            rt.call("AllocatorFree", rt.allocator, p)
            ti = C.c_void_p()
            rt.call(f"SessionGet{kind}TypeInfo", self.handle, i, C.byref(ti))
            try:
                tinfo = C.c_void_p()  # owned by ti
                rt.call("CastTypeInfoToTensorInfo", ti, C.byref(tinfo))
                et, shape = _element_type_and_shape(rt, tinfo)
            finally:
                rt.fn("ReleaseTypeInfo")(ti)
            res.append({"name": name, "dtype": np.dtype(_DT[et]).name if et in _DT else et, "shape": list(shape)})
        return res

    def run(self, feeds: Dict[str, np.ndarray], outputs: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
        rt = self.rt
        names = list(feeds)
        arrays = [np.ascontiguousarray(feeds[n]) for n in names]  # kept alive until Run returns: ORT borrows them
        vals = (C.c_void_p * len(arrays))()
        try:
            for i, a in enumerate(arrays):
                if a.dtype not in _NP:
                    raise TypeError(f"input {names[i]}: dtype {a.dtype} not supported")
                shape = (C.c_int64 * max(1, a.ndim))(*a.shape)
                v = C.c_void_p()
                rt.call("CreateTensorWithDataAsOrtValue", rt.cpu_memory, a.ctypes.data_as(C.c_void_p), a.nbytes,
                        shape, a.ndim, _NP[a.dtype], C.byref(v))
                vals[i] = v.value
            outs = list(outputs) if outputs else [o["name"] for o in self.outputs]
            in_names = (S * len(names))(*[n.encode() for n in names])
            out_names = (S * len(outs))(*[n.encode() for n in outs])
            res = (C.c_void_p * len(outs))()
            rt.call("Run", self.handle, self.run_options, in_names, vals, len(names), out_names, len(outs), res)
            try:
                return {n: self._to_numpy(res[i]) for i, n in enumerate(outs)}
            finally:
                for i in range(len(outs)):
                    if res[i]:
                        rt.fn("ReleaseValue")(res[i])
        finally:
            for i in range(len(arrays)):
                if vals[i]:
                    rt.fn("ReleaseValue")(vals[i])

    def _to_numpy(self, v) -> np.ndarray:
        rt = self.rt
        info = C.c_void_p()
        rt.call("GetTensorTypeAndShape", v, C.byref(info))
        try:
            et, shape = _element_type_and_shape(rt, info)
        finally:
            rt.fn("ReleaseTensorTypeAndShapeInfo")(info)
        dt = np.dtype(_DT[et])
        n = int(np.prod(shape)) if shape else 1
        if n == 0:
            return np.zeros(shape, dt)
        ptr = C.c_void_p()
        rt.call("GetTensorMutableData", v, C.byref(ptr))
        return np.frombuffer(C.string_at(ptr, n * dt.itemsize), dtype=dt).reshape(shape).copy()

    def close(self) -> None:
        if self.handle:
            self.rt.fn("ReleaseSession")(self.handle)
            self.handle = C.c_void_p()
        if self.run_options:
            self.rt.fn("ReleaseRunOptions")(self.run_options)
            self.run_options = C.c_void_p()


if __name__ == "__main__":  # quick look: python3 bench/gpu/ort_capi.py [lib]
    import json
    import sys

    rt = Runtime(sys.argv[1] if len(sys.argv) > 1 else None, check=False)
    print(json.dumps(rt.self_check()))
