"""Builtin-options and op-version tables for the .tflite writer/reader.

Every supported opcode maps to an :class:`OptionSpec`: the options table in the
``tflite`` package (``Conv2DOptions`` ...), its ``BuiltinOptions`` union member
and the fields qcc may set, each as ``(schema field name, kind, default)``.
Builder and reader functions are looked up by name in the generated ``tflite``
modules (``Conv2DOptionsAddStrideW``, ``Conv2DOptions.StrideW``), so adding an
opcode is one table row.

Defaults are the schema defaults, except where the schema default is not a
usable value (stride 0, depth_multiplier 0, softmax beta 0.0): there the
default is 1. ``REQUIRED`` fields have no sensible default at all.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np
from tflite.BuiltinOperator import BuiltinOperator
from tflite.BuiltinOptions import BuiltinOptions

REQUIRED = object()

PADDING = {"SAME": 0, "VALID": 1}
ACTIVATION = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3, "TANH": 4, "SIGN_BIT": 5}
WEIGHTS_FORMAT = {"DEFAULT": 0, "SHUFFLED4x16INT8": 1}
_ENUMS = {"padding": PADDING, "activation": ACTIVATION, "weights_format": WEIGHTS_FORMAT}

OPCODES = {name: code for name, code in vars(BuiltinOperator).items() if not name.startswith("_")}
OPCODE_NAMES = {code: name for name, code in OPCODES.items()}


@dataclass(frozen=True)
class OptionSpec:
    """How one opcode's builtin options are stored in the flatbuffer."""

    table: str    # options table = module name in the tflite package
    union: str    # BuiltinOptions union member
    fields: tuple  # ((schema field name, kind, default), ...)

    @property
    def union_type(self) -> int:
        return getattr(BuiltinOptions, self.union)


def _spec(table, *fields):
    return OptionSpec(table, table, tuple(fields))


_ACT = ("fused_activation_function", "activation", "NONE")
_PAD = ("padding", "padding", "SAME")
_STRIDES = (("stride_w", "int", 1), ("stride_h", "int", 1))
_DILATIONS = (("dilation_w_factor", "int", 1), ("dilation_h_factor", "int", 1))
_RESIZE = (("align_corners", "bool", False), ("half_pixel_centers", "bool", False))
_POOL = _spec("Pool2DOptions", _PAD, *_STRIDES, ("filter_width", "int", REQUIRED),
              ("filter_height", "int", REQUIRED), _ACT)

# None = the op has no options; the writer stores BuiltinOptions.NONE for it.
OPTION_SPECS: dict[str, OptionSpec | None] = {
    "CONV_2D": _spec("Conv2DOptions", _PAD, *_STRIDES, _ACT, *_DILATIONS),
    "DEPTHWISE_CONV_2D": _spec("DepthwiseConv2DOptions", _PAD, *_STRIDES,
                               ("depth_multiplier", "int", 1), _ACT, *_DILATIONS),
    "FULLY_CONNECTED": _spec("FullyConnectedOptions", _ACT,
                             ("weights_format", "weights_format", "DEFAULT"),
                             ("keep_num_dims", "bool", False),
                             ("asymmetric_quantize_inputs", "bool", False)),
    "TRANSPOSE_CONV": _spec("TransposeConvOptions", _PAD, *_STRIDES, _ACT),
    "ADD": _spec("AddOptions", _ACT, ("pot_scale_int16", "bool", True)),
    "SUB": _spec("SubOptions", _ACT, ("pot_scale_int16", "bool", True)),
    "MUL": _spec("MulOptions", _ACT),
    "CONCATENATION": _spec("ConcatenationOptions", ("axis", "int", REQUIRED), _ACT),
    "PAD": None,
    "PADV2": None,
    "MEAN": _spec("ReducerOptions", ("keep_dims", "bool", False)),
    "MAX_POOL_2D": _POOL,
    "AVERAGE_POOL_2D": _POOL,
    "RESHAPE": _spec("ReshapeOptions", ("new_shape", "ints", None)),
    "TRANSPOSE": None,
    "STRIDED_SLICE": _spec("StridedSliceOptions", ("begin_mask", "int", 0), ("end_mask", "int", 0),
                           ("ellipsis_mask", "int", 0), ("new_axis_mask", "int", 0),
                           ("shrink_axis_mask", "int", 0), ("offset", "bool", False)),
    "SPLIT": _spec("SplitOptions", ("num_splits", "int", REQUIRED)),
    "SPLIT_V": _spec("SplitVOptions", ("num_splits", "int", REQUIRED)),
    "SOFTMAX": _spec("SoftmaxOptions", ("beta", "float", 1.0)),
    "LOGISTIC": None,
    "TANH": None,
    "HARD_SWISH": None,
    "RSQRT": None,
    "LEAKY_RELU": _spec("LeakyReluOptions", ("alpha", "float", 0.0)),
    "PRELU": None,
    "RELU": None,
    "RELU6": None,
    "RESIZE_NEAREST_NEIGHBOR": _spec("ResizeNearestNeighborOptions", *_RESIZE),
    "RESIZE_BILINEAR": _spec("ResizeBilinearOptions", *_RESIZE),
    "QUANTIZE": None,
    "DEQUANTIZE": None,
    "MAXIMUM": None,
    "MINIMUM": None,
    "SQUEEZE": _spec("SqueezeOptions", ("squeeze_dims", "ints", None)),
}


def _camel(field: str) -> str:
    """'stride_w' -> 'StrideW', the spelling of the generated accessors."""
    return "".join(part[:1].upper() + part[1:] for part in field.split("_"))


def _module(table: str):
    # tflite/__init__ star-imports every module, which shadows the module
    # `tflite.Conv2DOptions` with its class; import the module explicitly.
    return importlib.import_module(f"tflite.{table}")


def spec_for(opcode: str) -> OptionSpec | None:
    """Return the option spec of ``opcode``; ValueError if qcc does not support it."""
    if opcode not in OPTION_SPECS:
        raise ValueError(f"unsupported TFLite opcode {opcode!r}; supported: {sorted(OPTION_SPECS)}")
    return OPTION_SPECS[opcode]


def _normalize_value(opcode, name, kind, value):
    if kind in _ENUMS:
        if value not in _ENUMS[kind]:
            raise ValueError(f"{opcode}: option {name}={value!r} is not one of {sorted(_ENUMS[kind])}")
        return value
    if kind == "int":
        return int(value)
    if kind == "bool":
        return bool(value)
    if kind == "float":
        return float(np.float32(value))  # the schema stores float32
    return None if value is None else [int(v) for v in value]  # "ints"


def normalize_options(opcode: str, options: dict) -> dict:
    """Validate ``options`` of ``opcode`` and fill in defaults.

    Returns a new dict holding every field of the spec, so two operators with
    the same meaning compare equal. Raises ValueError naming an unknown
    opcode, an unknown option name, a bad enum value or a missing required field.
    """
    spec = spec_for(opcode)
    fields = spec.fields if spec else ()
    known = {f[0] for f in fields}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"{opcode}: unknown option(s) {unknown}; known: {sorted(known)}")
    out = {}
    for name, kind, default in fields:
        value = options.get(name, default)
        if value is REQUIRED:
            raise ValueError(f"{opcode}: option {name!r} is required")
        out[name] = _normalize_value(opcode, name, kind, value)
    return out


def build_options(builder, opcode: str, options: dict) -> tuple[int, int | None]:
    """Write the options table; return (BuiltinOptions type, table offset or None)."""
    spec = spec_for(opcode)
    if spec is None:
        return BuiltinOptions.NONE, None
    options = normalize_options(opcode, options)
    mod = _module(spec.table)
    # Vectors must be finished before the table is started.
    vectors = {name: builder.CreateNumpyVector(np.asarray(options[name], dtype="<i4"))
               for name, kind, _ in spec.fields if kind == "ints" and options[name] is not None}
    getattr(mod, f"{spec.table}Start")(builder)
    for name, kind, _ in spec.fields:
        value = options[name]
        if kind == "ints":
            value = vectors.get(name)
            if value is None:
                continue
        elif kind in _ENUMS:
            value = _ENUMS[kind][value]
        getattr(mod, f"{spec.table}Add{_camel(name)}")(builder, value)
    return spec.union_type, getattr(mod, f"{spec.table}End")(builder)


def read_options(opcode: str, op) -> dict:
    """Decode the builtin options of a ``tflite.Operator`` into a normalized dict."""
    spec = spec_for(opcode)
    table = op.BuiltinOptions()
    if spec is None or table is None or op.BuiltinOptionsType() != spec.union_type:
        return normalize_options(opcode, {})
    obj = getattr(_module(spec.table), spec.table)()
    obj.Init(table.Bytes, table.Pos)
    out = {}
    for name, kind, _ in spec.fields:
        camel = _camel(name)
        if kind == "ints":
            out[name] = None if getattr(obj, f"{camel}IsNone")() else \
                getattr(obj, f"{camel}AsNumpy")().tolist()
            continue
        value = getattr(obj, camel)()
        if kind in _ENUMS:
            value = {v: k for k, v in _ENUMS[kind].items()}[value]
        out[name] = value
    return normalize_options(opcode, out)


# --- op versions -----------------------------------------------------------
# Versions the TFLite converter assigns to int8 kernels, from
# tensorflow/lite/tools/versioning/op_version.cc (GetBuiltinOperatorVersion).
# TFLM ignores versions; LiteRT refuses versions above what its kernels
# register, and a lower version never selects a different kernel.
INT8_VERSIONS = {
    "CONV_2D": 3, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 4, "TRANSPOSE_CONV": 2,
    "ADD": 2, "SUB": 2, "MUL": 2, "CONCATENATION": 2, "PAD": 2, "PADV2": 2, "MEAN": 2,
    "MAX_POOL_2D": 2, "AVERAGE_POOL_2D": 2, "RESHAPE": 1, "TRANSPOSE": 2,
    "STRIDED_SLICE": 2, "SPLIT": 2, "SPLIT_V": 2, "SOFTMAX": 2, "LOGISTIC": 2, "TANH": 2,
    "HARD_SWISH": 1, "RSQRT": 2, "LEAKY_RELU": 1, "PRELU": 1, "RELU": 2, "RELU6": 2,
    "RESIZE_NEAREST_NEIGHBOR": 2, "RESIZE_BILINEAR": 2, "QUANTIZE": 1, "DEQUANTIZE": 2,
    "MAXIMUM": 2, "MINIMUM": 2, "SQUEEZE": 1,
}


def op_version(opcode: str, options: dict, inputs: list, outputs: list) -> int:
    """Operator version as the converter assigns it for int8 graphs.

    ``inputs``/``outputs`` are the operator's TflTensor objects (None for an
    omitted optional input). Ops without any int8 tensor get version 1.
    """
    spec_for(opcode)
    present = [t for t in inputs if t is not None]
    if opcode == "SOFTMAX" and present and present[0].dtype == "int16":
        return 3  # int16 input (the quantizer's path for softmaxes over > 4095 classes)
    if opcode == "QUANTIZE" and outputs and outputs[0].dtype == "int16" and len(outputs[0].scale or ()) <= 1:
        return 2  # int16 output
    if not any(t.dtype == "int8" for t in present + outputs):
        return 1
    version = INT8_VERSIONS[opcode]
    rank = max((len(t.shape) for t in present), default=0)
    first, second = (present + [None, None])[:2]
    if opcode == "CONV_2D" and second is not None and first.shape[-1:] != second.shape[-1:]:
        version = 6  # grouped convolution
    elif opcode == "FULLY_CONNECTED":
        if len(inputs) == 2:
            version = 6  # no bias input at all
        elif options.get("keep_num_dims"):
            version = 5
    elif opcode == "TRANSPOSE_CONV":
        if options.get("fused_activation_function", "NONE") != "NONE":
            version = 4
        elif len(inputs) == 4 and inputs[3] is not None:
            version = 3  # has a bias
    elif opcode == "MUL" and second is not None and outputs and \
            all(t.scale for t in (first, second, outputs[0])):
        if first.scale[0] * second.scale[0] / outputs[0].scale[0] >= 1.0:
            version = 3  # rescale factor >= 1
    elif opcode == "RESIZE_BILINEAR" and options.get("half_pixel_centers"):
        version = 3
    elif opcode == "RESIZE_NEAREST_NEIGHBOR" and (options.get("half_pixel_centers")
                                                  or options.get("align_corners")):
        version = 3
    elif opcode == "STRIDED_SLICE":
        if options.get("offset"):
            version = 8
        elif options.get("ellipsis_mask") or options.get("new_axis_mask"):
            version = 6
        elif rank > 4:
            version = 4
    elif opcode in ("TRANSPOSE", "PAD", "PADV2") and rank > 4:
        version = 6 if opcode == "TRANSPOSE" and rank > 5 else 4
    elif opcode in ("SUB", "MAXIMUM", "MINIMUM") and rank > 4 and \
            len({t.shape for t in present[:2]}) > 1:
        version = 3  # >4-D broadcast
    elif opcode == "QUANTIZE" and outputs and len(outputs[0].scale or ()) > 1:
        version = 3  # per-channel
    elif opcode == "DEQUANTIZE" and first is not None and len(first.scale or ()) > 1:
        version = 5  # per-channel
    return version
