"""CompileOptions: every knob of one compilation, frozen, unknown names rejected."""
from __future__ import annotations

from dataclasses import dataclass, field

from qcompiler.quant.calibration import source_name


@dataclass(frozen=True)
class CompileOptions:
    """Every knob of one compilation; unknown names are rejected by the dataclass."""

    target: str = "tflm"
    calib: object = None               # a .npy/.npz path, an array, or {input name: array}
    calib_method: str = "percentile"
    max_calib_samples: int | None = None
    percentile: float = 99.99           # --calib-method percentile
    per_tensor: bool = False            # every weight per tensor (conv and FC)
    cle: bool = False                   # cross-layer equalization (+ high-bias absorption)
    act_eq: bool = True                 # activation equalization into depthwise convs (needs --calib)
    bias_correction: str = "auto"       # auto | off | empirical | analytic (auto: empirical with data)
    input_range: tuple | None = None    # (lo, hi) of every float input; needed without --calib
    input_shapes: dict = field(default_factory=dict)
    passes: tuple[str, ...] | None = None
    per_channel_fc: bool | str = "auto"  # True | False | "auto" (per channel where it gains >= 3 dB)
    name: str | None = None
    activations: str = "int8"           # int8 | int16 (TFLite's 16x8 scheme) | auto (per layer, to --min-sqnr)
    min_sqnr: float | None = None       # with auto: the output SQNR (dB, calibration data) to reach
    max_arena: int | None = None        # with auto: the largest runtime arena (bytes) a choice may need
    int16_nodes: tuple[str, ...] = ()   # with auto: these nodes in int16 (no search)
    int8_outputs: bool = False          # keep every graph output int8 (no int16 head for mixed-range outputs)
    weight_rounding: str = "auto"       # nearest | gptq | bounded | auto (gptq with int16 / auto activations)
    split_weights: str = "off"          # off | fc | all | NODE,...: with int16, layers as two int8 weight halves + ADD
    recurrent: str = "auto"             # with int8 activations: unrolled LSTMs in int16 | int8 | auto (int16 if the target can)
    disable_passes: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    dump_after: tuple[str, ...] = ()
    dump_dir: str | None = None
    max_memory_mb: int = 4096           # largest array an input file (or a graph input) may make qcc allocate
    # the target's own options by field name, e.g. {"io": "float"} for tflm or
    # {"tvm_target": "llvm"} for tvm; checked against the backend's options dataclass
    target_options: dict = field(default_factory=dict)

    def describe(self, target_options=None) -> str:
        """The options as a command-line-like string (goes into every generated file);
        `target_options`: the backend's resolved options dataclass (adds its flags)."""
        parts = [f"--target {self.target}"]
        if self.calib is not None:
            parts.append(f"--calib {source_name(self.calib)}")
        parts.append(f"--calib-method {self.calib_method}")
        if self.calib_method == "percentile":
            parts.append(f"--percentile {self.percentile:g}")
        if self.max_calib_samples:
            parts.append(f"--max-calib-samples {self.max_calib_samples}")
        from qcompiler.quant.ptq_options import resolved_bias_correction, resolved_cle
        if self.per_tensor:
            parts.append("--per-tensor")
        parts.append("--cle" if resolved_cle(self) else "--no-cle")
        if not self.act_eq:
            parts.append("--no-act-eq")
        parts.append(f"--bias-correction {resolved_bias_correction(self)}")
        if self.input_range is not None:
            parts.append(f"--input-range {self.input_range[0]:g},{self.input_range[1]:g}")
        for k, v in sorted(self.input_shapes.items()):
            parts.append(f"--input-shape {k}={','.join(map(str, v))}")
        if self.passes is not None:
            parts.append(f"--passes {','.join(self.passes)}")
        if self.disable_passes:
            parts.append(f"--disable-pass {','.join(self.disable_passes)}")
        if self.outputs:
            parts.append(f"--outputs {','.join(self.outputs)}")
        if self.per_channel_fc != "auto":
            parts.append("--per-channel-fc" if self.per_channel_fc else "--per-tensor-fc")
        if self.activations != "int8":
            parts.append(f"--activations {self.activations}")
        if self.min_sqnr is not None:
            parts.append(f"--min-sqnr {self.min_sqnr:g}")
        if self.max_arena is not None:
            parts.append(f"--max-arena {self.max_arena}")
        if self.recurrent != "auto":
            parts.append(f"--recurrent {self.recurrent}")
        if self.weight_rounding != "auto":
            parts.append(f"--weight-rounding {self.weight_rounding}")
        if self.split_weights != "off":
            parts.append(f"--split-weights {self.split_weights}")
        if self.int16_nodes:
            parts.append(f"--int16-nodes {','.join(self.int16_nodes)}")
        if self.int8_outputs:
            parts.append("--int8-outputs")
        if target_options is not None:
            parts += target_options.describe()
        return " ".join(parts)
