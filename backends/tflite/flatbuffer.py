"""Small table-driven .tflite writer and reader.

The writer uses the builder functions generated into the ``tflite`` package
(one subgraph, schema version 3, file identifier ``TFL3``). Conventions:

* Buffer 0 is the empty sentinel and **every activation tensor points at
  buffer 0** (TFLM and LiteRT both treat a tensor whose buffer holds no data
  as a runtime tensor). This saves one empty buffer table per activation.
* Constant buffers are deduplicated: tensors with byte-identical contents share
  one buffer. Both runtimes treat constant buffers as read-only.
* Every buffer's data starts on a 16-byte boundary of the file, as the
  schema's ``force_align: 16`` asks, so kernels may read it in place.
* Operator codes are deduplicated in first-use order; versions come from
  :func:`options.op_version`.
* The output depends only on the model: same model -> identical bytes.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field

import flatbuffers
import numpy as np
from tflite.TensorType import TensorType

from qcompiler.backends.tflite import options as opt

SCHEMA_VERSION = 3
FILE_IDENTIFIER = b"TFL3"

# qcc dtype name -> (TensorType, little-endian numpy dtype)
DTYPES = {
    "int8": (TensorType.INT8, np.dtype("<i1")),
    "uint8": (TensorType.UINT8, np.dtype("<u1")),
    "int16": (TensorType.INT16, np.dtype("<i2")),
    "int32": (TensorType.INT32, np.dtype("<i4")),
    "int64": (TensorType.INT64, np.dtype("<i8")),
    "float32": (TensorType.FLOAT32, np.dtype("<f4")),
    "bool": (TensorType.BOOL, np.dtype("bool")),
}
_DTYPE_BY_TYPE = {code: name for name, (code, _) in DTYPES.items()}


def _fb(table: str):
    """The generated module of ``table`` (the package re-exports classes under module names)."""
    return importlib.import_module(f"tflite.{table}")


@dataclass(eq=False)
class TflTensor:
    """One tensor. ``data`` set = constant; scale/zero_point set = quantized.

    Values are normalized on construction (shape to a tuple of ints, data to
    the tensor dtype and shape, scales to float32-representable floats) so a
    tensor read back from a file compares equal to the one written.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    data: np.ndarray | None = None
    scale: list[float] | None = None
    zero_point: list[int] | None = None
    quantized_dimension: int = 0

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"tensor {self.name!r}: unsupported dtype {self.dtype!r}")
        self.shape = tuple(int(d) for d in self.shape)
        if self.data is not None:
            self.data = self._normalize_data(np.asarray(self.data))
        if self.scale is not None:
            self.scale = [float(np.float32(s)) for s in self.scale]
            if self.zero_point is None:
                self.zero_point = [0] * len(self.scale)
        if self.zero_point is not None:
            self.zero_point = [int(z) for z in self.zero_point]
            if self.scale is None or len(self.scale) != len(self.zero_point):
                raise ValueError(f"tensor {self.name!r}: scale and zero_point lengths differ")
        self.quantized_dimension = int(self.quantized_dimension)

    def _normalize_data(self, arr: np.ndarray) -> np.ndarray:
        target = DTYPES[self.dtype][1]
        if arr.dtype != target:
            converted = arr.astype(target)
            # Refuse silent overflow/truncation into integer types; float64 ->
            # float32 rounding is expected.
            if target.kind != "f" and not np.array_equal(converted, arr):
                raise ValueError(f"tensor {self.name!r}: data does not fit {self.dtype}")
            arr = converted
        if arr.size != math.prod(self.shape):
            raise ValueError(f"tensor {self.name!r}: {arr.size} data elements for shape {self.shape}")
        return np.ascontiguousarray(arr.reshape(self.shape))

    def __eq__(self, other):
        if not isinstance(other, TflTensor):
            return NotImplemented
        same_data = (self.data is None and other.data is None) or (
            self.data is not None and other.data is not None
            and self.data.dtype == other.data.dtype and np.array_equal(self.data, other.data))
        return same_data and (self.name, self.shape, self.dtype, self.scale, self.zero_point,
                              self.quantized_dimension) == (
            other.name, other.shape, other.dtype, other.scale, other.zero_point,
            other.quantized_dimension)


@dataclass
class TflOperator:
    """One builtin operator; ``options`` are normalized to the full field set."""

    opcode: str
    inputs: list[int]
    outputs: list[int]
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        self.options = opt.normalize_options(self.opcode, self.options)
        self.inputs = [int(i) for i in self.inputs]
        self.outputs = [int(i) for i in self.outputs]


@dataclass
class TflModel:
    """A single-subgraph model: tensors, operators in execution order, graph I/O."""

    tensors: list[TflTensor]
    operators: list[TflOperator]
    inputs: list[int]
    outputs: list[int]
    description: str = "qcc"
    metadata: dict[str, bytes] = field(default_factory=dict)


# --- writer ------------------------------------------------------------------

def _assign_buffers(model: TflModel):
    """Return (payloads, buffer index per tensor, buffer index per metadata name).

    Payload 0 is the empty sentinel; identical payloads share one index.
    Zero-byte constants go to buffer 0 too: runtimes cannot tell them from
    activations anyway.
    """
    payloads, index = [b""], {b"": 0}

    def intern(data: bytes) -> int:
        if data not in index:
            index[data] = len(payloads)
            payloads.append(data)
        return index[data]

    tensor_buf = [0 if t.data is None else intern(t.data.tobytes()) for t in model.tensors]
    meta_buf = {name: intern(bytes(data)) for name, data in model.metadata.items()}
    return payloads, tensor_buf, meta_buf


def _build_buffer(b, data: bytes) -> int:
    Buffer = _fb("Buffer")
    vec = None
    if data:
        # The builder writes back to front. Pad so the data ends up 16-aligned
        # relative to the buffer end; Finish() pads the whole file to a
        # multiple of the largest alignment used (16), so the data is aligned
        # from the file start too. The length prefix then needs no padding.
        b.Prep(16, len(data))
        vec = b.CreateByteVector(data)
    Buffer.BufferStart(b)
    if vec is not None:
        Buffer.BufferAddData(b, vec)
    return Buffer.BufferEnd(b)


def _int_vector(b, values, dtype="<i4") -> int:
    return b.CreateNumpyVector(np.asarray(list(values), dtype=dtype))


def _table_vector(b, table: str, field_name: str, offsets: list[int]) -> int:
    getattr(_fb(table), f"{table}Start{field_name}Vector")(b, len(offsets))
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def _build_quantization(b, t: TflTensor) -> int:
    Q = _fb("QuantizationParameters")
    scale = _int_vector(b, t.scale, "<f4")
    zero_point = _int_vector(b, t.zero_point, "<i8")
    Q.QuantizationParametersStart(b)
    Q.QuantizationParametersAddScale(b, scale)
    Q.QuantizationParametersAddZeroPoint(b, zero_point)
    Q.QuantizationParametersAddQuantizedDimension(b, t.quantized_dimension)
    return Q.QuantizationParametersEnd(b)


def _build_tensor(b, t: TflTensor, buffer_index: int) -> int:
    T = _fb("Tensor")
    name = b.CreateString(t.name)
    shape = _int_vector(b, t.shape)
    quant = _build_quantization(b, t) if t.scale is not None else None
    T.TensorStart(b)
    T.TensorAddShape(b, shape)
    T.TensorAddType(b, DTYPES[t.dtype][0])
    T.TensorAddBuffer(b, buffer_index)
    T.TensorAddName(b, name)
    if quant is not None:
        T.TensorAddQuantization(b, quant)
    return T.TensorEnd(b)


def _opcode_list(model: TflModel):
    """Distinct (opcode, version) pairs in first-use order, and each op's index.

    One OperatorCode per opcode, carrying the highest version any use needs.
    """
    versions: dict[str, int] = {}
    for op in model.operators:
        ins = [model.tensors[i] if i >= 0 else None for i in op.inputs]
        outs = [model.tensors[i] for i in op.outputs]
        version = opt.op_version(op.opcode, op.options, ins, outs)
        versions[op.opcode] = max(versions.get(op.opcode, 0), version)
    order = list(versions)
    return list(versions.items()), [order.index(op.opcode) for op in model.operators]


def _build_opcode(b, opcode: str, version: int) -> int:
    OC = _fb("OperatorCode")
    code = opt.OPCODES[opcode]
    OC.OperatorCodeStart(b)
    # Codes above 127 do not fit the old int8 field; 127 tells readers to
    # look at builtin_code instead.
    OC.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
    OC.OperatorCodeAddVersion(b, version)
    OC.OperatorCodeAddBuiltinCode(b, code)
    return OC.OperatorCodeEnd(b)


def _build_operator(b, op: TflOperator, opcode_index: int) -> int:
    O = _fb("Operator")
    inputs, outputs = _int_vector(b, op.inputs), _int_vector(b, op.outputs)
    options_type, options = opt.build_options(b, op.opcode, op.options)
    O.OperatorStart(b)
    O.OperatorAddOpcodeIndex(b, opcode_index)
    O.OperatorAddInputs(b, inputs)
    O.OperatorAddOutputs(b, outputs)
    if options is not None:
        O.OperatorAddBuiltinOptionsType(b, options_type)
        O.OperatorAddBuiltinOptions(b, options)
    return O.OperatorEnd(b)


def _build_subgraph(b, model: TflModel, tensor_buf: list[int], op_index: list[int]) -> int:
    SG = _fb("SubGraph")
    tensors = [_build_tensor(b, t, i) for t, i in zip(model.tensors, tensor_buf)]
    tensors = _table_vector(b, "SubGraph", "Tensors", tensors)
    ops = [_build_operator(b, op, i) for op, i in zip(model.operators, op_index)]
    ops = _table_vector(b, "SubGraph", "Operators", ops)
    inputs, outputs = _int_vector(b, model.inputs), _int_vector(b, model.outputs)
    name = b.CreateString("main")
    SG.SubGraphStart(b)
    SG.SubGraphAddTensors(b, tensors)
    SG.SubGraphAddInputs(b, inputs)
    SG.SubGraphAddOutputs(b, outputs)
    SG.SubGraphAddOperators(b, ops)
    SG.SubGraphAddName(b, name)
    return SG.SubGraphEnd(b)


def _build_metadata(b, name: str, buffer_index: int) -> int:
    MD = _fb("Metadata")
    name_off = b.CreateString(name)
    MD.MetadataStart(b)
    MD.MetadataAddName(b, name_off)
    MD.MetadataAddBuffer(b, buffer_index)
    return MD.MetadataEnd(b)


def _validate(model: TflModel) -> None:
    n = len(model.tensors)
    for op in model.operators:
        opt.spec_for(op.opcode)
        bad = [i for i in op.inputs if not -1 <= i < n] + [i for i in op.outputs if not 0 <= i < n]
        if bad:
            raise ValueError(f"{op.opcode}: tensor indices {bad} out of range (0..{n - 1})")
    bad = [i for i in list(model.inputs) + list(model.outputs) if not 0 <= i < n]
    if bad:
        raise ValueError(f"graph input/output indices {bad} out of range (0..{n - 1})")
    for i in model.inputs:
        if model.tensors[i].data is not None:
            raise ValueError(f"graph input {model.tensors[i].name!r} must not be a constant")


def write_model(model: TflModel) -> bytes:
    """Serialize ``model`` to .tflite bytes (deterministic).

    Raises ValueError for unsupported opcodes, unknown option names and
    out-of-range tensor indices.
    """
    _validate(model)
    M = _fb("Model")
    payloads, tensor_buf, meta_buf = _assign_buffers(model)
    codes, op_index = _opcode_list(model)
    b = flatbuffers.Builder(1024 + sum(len(p) + 16 for p in payloads))
    # Built first = placed last: the bulk constant data ends the file.
    buffers = _table_vector(b, "Model", "Buffers", [_build_buffer(b, p) for p in payloads])
    subgraph = _build_subgraph(b, model, tensor_buf, op_index)
    subgraphs = _table_vector(b, "Model", "Subgraphs", [subgraph])
    opcodes = _table_vector(b, "Model", "OperatorCodes", [_build_opcode(b, *c) for c in codes])
    metadata = [_build_metadata(b, name, idx) for name, idx in meta_buf.items()]
    metadata = _table_vector(b, "Model", "Metadata", metadata) if metadata else None
    description = b.CreateString(model.description)
    M.ModelStart(b)
    M.ModelAddVersion(b, SCHEMA_VERSION)
    M.ModelAddOperatorCodes(b, opcodes)
    M.ModelAddSubgraphs(b, subgraphs)
    M.ModelAddDescription(b, description)
    M.ModelAddBuffers(b, buffers)
    if metadata is not None:
        M.ModelAddMetadata(b, metadata)
    b.Finish(M.ModelEnd(b), file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())


# --- reader ------------------------------------------------------------------

def _root(data: bytes):
    Model = _fb("Model").Model
    if not Model.ModelBufferHasIdentifier(data, 0):
        raise ValueError("not a .tflite flatbuffer (missing TFL3 identifier)")
    return Model.GetRootAs(data, 0)


def _buffer_bytes(model, index: int) -> bytes:
    buf = model.Buffers(index)
    return buf.DataAsNumpy().tobytes() if buf is not None and buf.DataLength() else b""


def buffer_data_offsets(data: bytes) -> list[tuple[int, int]]:
    """(file offset, length) of each buffer's data; (0, 0) for empty buffers."""
    model = _root(data)
    out = []
    for i in range(model.BuffersLength()):
        buf = model.Buffers(i)
        n = buf.DataLength()
        # The generated API has no accessor for a vector's position; 4 is the
        # vtable slot of Buffer.data.
        out.append((buf._tab.Vector(buf._tab.Offset(4)), n) if n else (0, 0))
    return out


def _read_tensor(model, t) -> TflTensor:
    dtype = _DTYPE_BY_TYPE.get(t.Type())
    if dtype is None:
        raise ValueError(f"tensor {t.Name()!r}: unsupported TensorType {t.Type()} (qcc reads "
                         f"{sorted(DTYPES)})")
    shape = tuple(t.ShapeAsNumpy().tolist()) if t.ShapeLength() else ()
    raw = _buffer_bytes(model, t.Buffer())
    data = np.frombuffer(raw, dtype=DTYPES[dtype][1]).reshape(shape).copy() if raw else None
    q = t.Quantization()
    scale = zero_point = None
    qdim = 0
    if q is not None and q.ScaleLength():
        scale = q.ScaleAsNumpy().tolist()
        zero_point = q.ZeroPointAsNumpy().tolist() if q.ZeroPointLength() else None
        qdim = q.QuantizedDimension()
    return TflTensor((t.Name() or b"").decode(), shape, dtype, data, scale, zero_point, qdim)


def _read_operator(model, op) -> TflOperator:
    code = model.OperatorCodes(op.OpcodeIndex())
    number = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    opcode = opt.OPCODE_NAMES.get(number, str(number))
    inputs = op.InputsAsNumpy().tolist() if op.InputsLength() else []
    outputs = op.OutputsAsNumpy().tolist() if op.OutputsLength() else []
    return TflOperator(opcode, inputs, outputs, opt.read_options(opcode, op))


def read_model(data: bytes) -> TflModel:
    """Parse .tflite bytes written by :func:`write_model` back into a :class:`TflModel`.

    Converter output also reads if it has one subgraph and only the dtypes and
    opcodes qcc supports; anything else raises ValueError.
    """
    model = _root(data)
    if model.SubgraphsLength() != 1:
        raise ValueError(f"expected 1 subgraph, found {model.SubgraphsLength()}")
    sg = model.Subgraphs(0)
    tensors = [_read_tensor(model, sg.Tensors(i)) for i in range(sg.TensorsLength())]
    ops = [_read_operator(model, sg.Operators(i)) for i in range(sg.OperatorsLength())]
    metadata = {}
    for i in range(model.MetadataLength()):
        md = model.Metadata(i)
        metadata[md.Name().decode()] = _buffer_bytes(model, md.Buffer())
    return TflModel(
        tensors=tensors,
        operators=ops,
        inputs=sg.InputsAsNumpy().tolist() if sg.InputsLength() else [],
        outputs=sg.OutputsAsNumpy().tolist() if sg.OutputsLength() else [],
        description=(model.Description() or b"").decode(),
        metadata=metadata,
    )
