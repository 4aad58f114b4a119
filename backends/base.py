"""The Backend protocol: everything the driver may know about a compilation target.

A backend is one folder under `backends/` with an instance of a `Backend` subclass,
listed by name in `registry.py`. The driver compiles with

    backend.check_supported(graph)          # every op it cannot lower, in one error
    report = backend.emit(compilation, tmp)  # files into tmp, report.json entries back

and `qcc verify` runs one generic loop over a loaded artifact:

    art = backend.load(outdir, report)       # runtimes ready, the oracle graph loaded
    want = backend.expected(art, feed)       # the oracle's outputs for one float sample
    got = backend.run(art, feed, runtime)    # the runtime's outputs, same form

and compares them with each check's comparator (`art.checks`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

from qcompiler.errors import QccError
from qcompiler.ir import Graph
from qcompiler.quant.scheme import QuantScheme


@dataclass(frozen=True)
class NoOptions:
    """A backend without options of its own."""

    def describe(self) -> list[str]:
        return []


def option(default, flag: str, help: str, choices: tuple | None = None):
    """A target option: a dataclass field with its command-line flag (`qcc --FLAG`)."""
    return field(default=default, metadata={"flag": flag, "help": help, "choices": choices})


def make_options(cls: type, given: dict, target: str):
    """`cls(**given)` with unknown names named in the error (and the known ones listed)."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise QccError(f"target {target!r} has no option(s) {', '.join(unknown)}"
                       f" (its options: {', '.join(sorted(known)) or 'none'})")
    return cls(**given)


@dataclass
class Compilation:
    """What the driver hands a backend: both graphs, the calibrated ranges, options, names."""

    float_graph: Graph
    quant_graph: Graph | None  # None when the backend's scheme has no integer IR
    ranges: dict
    options: object            # the driver's CompileOptions (generic knobs)
    target_options: object     # the backend's own options dataclass
    name: str
    header: str  # "from <model> (sha256 ...) with <options>": first line of generated files


class Comparator:
    """Accumulates the difference between oracle and runtime outputs over samples."""

    def add(self, output: str, expected: np.ndarray, got: np.ndarray) -> None:
        raise NotImplementedError

    def summary(self) -> dict:
        raise NotImplementedError

    @property
    def ok(self) -> bool:
        raise NotImplementedError


@dataclass(frozen=True)
class Check:
    """One runtime compared with the oracle: `required` checks decide `qcc verify`'s result."""

    runtime: str
    comparator: Callable[[], Comparator]
    required: bool = True


@dataclass
class Artifact:
    """An emitted output directory, loaded for verification.

    graph: the graph whose inputs name and shape the samples (the oracle's graph);
    checks: what `qcc verify` compares; info: extra entries for verify's result;
    float_graph: the float model, when the output directory keeps it (fidelity);
    state: whatever the backend needs to run it (interpreters, sessions).
    """

    outdir: Path
    report: dict
    graph: Graph
    oracle: str
    checks: list[Check]
    info: dict = field(default_factory=dict)
    float_graph: Graph | None = None
    state: dict = field(default_factory=dict)


class Backend:
    """Base class of the backends; subclasses set the class attributes and the methods."""

    name: ClassVar[str]                         # the --target name
    description: ClassVar[str]
    extra: ClassVar[str | None] = None          # pip extra with its Python dependencies
    options_class: ClassVar[type] = NoOptions   # dataclass of its options (see `option`)
    scheme: QuantScheme
    int16_scheme: QuantScheme | None = None     # int16 activations (--activations int16 / auto)
    no_int16_reason: ClassVar[str] = "its runtime quantizes activations to int8 only"
    default_passes: tuple[str, ...]

    def check_supported(self, graph: Graph) -> None:
        """Raise UnsupportedOpError listing every op (and node) it cannot lower."""
        raise NotImplementedError

    def schemes(self, activations: str) -> tuple[QuantScheme, QuantScheme | None]:
        """(scheme of the int8 nodes, scheme of the int16 nodes or None) for --activations
        int8 | int16 | auto; a QccError when the runtime has no int16 scheme."""
        if activations == "int8":
            return self.scheme, None
        if activations not in ("int16", "auto"):
            raise QccError(f"--activations {activations!r}: choose int8, int16 or auto")
        if self.int16_scheme is None:
            raise QccError(f"target {self.name!r} has no int16 activation scheme ({self.no_int16_reason}), "
                           f"so --activations {activations} is not available; use --activations int8 or a "
                           "target with TFLite's 16x8 scheme (tflm, tflite, tvm)")
        return self.scheme, self.int16_scheme

    def cost(self, qgraph: Graph, exact: bool = True) -> int | None:
        """Runtime arena bytes of a candidate integer graph, for --activations auto (None: the
        search plans the activations itself)."""
        return None

    def activation_arena(self, qgraph: Graph) -> int | None:
        """Activation bytes the target's own memory plan of a candidate integer graph needs,
        computed without running anything, so that choices made on it (quant/wide_tails.py)
        come out the same whether or not the runtime is installed; None: the caller estimates
        from the graph."""
        return None

    def supported_ops(self) -> set[str]:
        """Op names it lowers (for `qcc inspect --target` and the parity test)."""
        raise NotImplementedError

    def unsupported_reason(self, op: str) -> str | None:
        """Why this target refuses `op` (what its runtime or integer scheme lacks), for an op
        some other backend lowers; None when it runs the op (after its default passes) or has
        declared nothing. `check_supported` puts the same reason into its error, and
        tests/test_backend_parity.py holds every backend to this answer."""
        return None

    def emit(self, comp: Compilation, outdir: Path) -> dict:
        """Write the artifact files into `outdir`; return report.json entries (with "files")."""
        raise NotImplementedError

    def load(self, outdir: Path, report: dict, **verify_options) -> Artifact:
        """Load an emitted output directory for `qcc verify`."""
        raise NotImplementedError

    def expected(self, art: Artifact, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The oracle's outputs for one float sample, in the form `run` returns."""
        raise NotImplementedError

    def run(self, art: Artifact, feed: dict[str, np.ndarray], runtime: str) -> dict[str, np.ndarray]:
        """Run the artifact in `runtime` on one float sample: {output name: array}, ONNX layout."""
        raise NotImplementedError

    def to_float(self, art: Artifact, output: str, arr: np.ndarray) -> np.ndarray:
        """An output of `run` in float units (integer outputs dequantized with the oracle
        graph's output parameters), for the fidelity against the float model."""
        if np.issubdtype(arr.dtype, np.floating):
            return arr
        value = next(v for v in art.graph.outputs if v.name == output)
        return value.quant.dequantize(arr)
