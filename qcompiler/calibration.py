"""Calibration data loading and range observers.

Data: a `.npy` file for a one-input model (first axis = samples) or a `.npz`
keyed by input name. Observers see every node output through the float
interpreter's hook and keep only running statistics, so memory stays bounded
whatever the number of samples.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import CalibrationError
from .interpreter import FLOAT_KERNELS, Interpreter
from .ir import Graph


def _check_array(arr: np.ndarray, v, path: Path) -> np.ndarray:
    """Arrays hold samples along axis 0: [N, *input.shape[1:]]."""
    want = tuple(v.shape[1:])
    if arr.ndim != len(v.shape) or tuple(arr.shape[1:]) != want:
        raise CalibrationError(f"calibration file {path}: input {v.name!r} needs an array of shape "
                               f"[N, {', '.join(map(str, want))}], got {list(arr.shape)}")
    if arr.shape[0] < v.shape[0]:
        raise CalibrationError(f"calibration file {path} holds {arr.shape[0]} samples for input "
                               f"{v.name!r}; at least {v.shape[0]} needed")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise CalibrationError(f"calibration file {path}: input {v.name!r} has dtype {arr.dtype}, "
                               "expected real numbers")
    arr = arr.astype(v.dtype, copy=False)
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise CalibrationError(f"calibration file {path}: input {v.name!r} contains NaN or Inf")
    return arr


def load_samples(path: str | os.PathLike, graph: Graph) -> dict[str, np.ndarray]:
    """Load and check a calibration/evaluation file: {input name: array [N, ...]}."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"calibration file {path} does not exist")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        raise CalibrationError(f"{path} is not a readable .npy/.npz file ({e})") from None
    if isinstance(data, np.ndarray):
        if len(graph.inputs) != 1:
            raise CalibrationError(f"{path} is a single array but the model has {len(graph.inputs)} "
                                   f"inputs {[v.name for v in graph.inputs]}: use an .npz keyed by input name")
        arrays = {graph.inputs[0].name: data}
    else:
        arrays = {k: data[k] for k in data.files}
        missing = [v.name for v in graph.inputs if v.name not in arrays]
        if missing:
            raise CalibrationError(f"{path} has no array for input(s) {missing} (keys: {sorted(arrays)})")
    out = {v.name: _check_array(arrays[v.name], v, path) for v in graph.inputs}
    counts = {k: a.shape[0] for k, a in out.items()}
    if len(set(counts.values())) > 1:
        raise CalibrationError(f"{path}: inputs have different sample counts {counts}")
    return out


def iterate_samples(samples: dict[str, np.ndarray], graph: Graph, limit: int | None = None
                    ) -> Iterator[dict[str, np.ndarray]]:
    """Yield one feed dict per sample, batch dimension restored to the model's."""
    batch = graph.inputs[0].shape[0]
    n = next(iter(samples.values())).shape[0] // batch
    for i in range(n if limit is None else min(n, limit)):
        yield {v.name: samples[v.name][i * batch:(i + 1) * batch] for v in graph.inputs}


class MinMaxObserver:
    """Running min and max of every float activation."""

    def __init__(self):
        self.ranges: dict[str, tuple[float, float]] = {}

    def observe(self, name: str, arr: np.ndarray) -> None:
        if not np.issubdtype(arr.dtype, np.floating) or arr.size == 0:
            return
        lo, hi = float(np.min(arr)), float(np.max(arr))
        if name in self.ranges:
            plo, phi = self.ranges[name]
            lo, hi = min(lo, plo), max(hi, phi)
        self.ranges[name] = (lo, hi)


def calibrate(graph: Graph, feeds: Iterator[dict[str, np.ndarray]], method: str = "minmax"
              ) -> dict[str, tuple[float, float]]:
    """Run the float graph over `feeds` and return {value name: (min, max)}."""
    if method != "minmax":
        raise CalibrationError(f"calibration method {method!r} is not available (choose minmax)")
    obs = MinMaxObserver()

    def hook(node, outs):
        for v, arr in zip(node.outputs, outs):
            obs.observe(v.name, arr)

    interp = Interpreter(graph, FLOAT_KERNELS, hook=hook)
    count = 0
    for feed in feeds:
        for name, arr in feed.items():
            obs.observe(name, arr)
        interp.run(feed)
        count += 1
    if count == 0:
        raise CalibrationError("calibration needs at least one sample")
    for name, (lo, hi) in obs.ranges.items():
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise CalibrationError(f"activation {name} reached a non-finite value during calibration "
                                   f"(range {lo}..{hi}); check the model's weights and the data")
    return obs.ranges
