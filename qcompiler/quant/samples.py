"""Calibration samples: reading them from .npy / .npz files or arrays, checking them, and
iterating one feed per sample.

A `.npy` file for a one-input model (first axis = samples) or a `.npz` keyed by input name.
Small `.npy` files are read whole; larger ones are memory-mapped (for shape and dtype) and read
one sample at a time with file reads, so the resident size does not grow with the file. An
`.npz` loads only the members the model's inputs name, after checking their headers against
the memory limit. Every sample is checked finite, and a sample far beyond the others is refused.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np

from qcompiler.errors import CalibrationError
from qcompiler.ir import Graph

_CHUNK = 64  # samples per chunk when checking a memory-mapped file for NaN/Inf
SMALL_FILE_BYTES = 32 << 20  # a .npy up to this size is read whole; larger ones stay memory-mapped


def rows(arr: np.ndarray, start: int, stop: int) -> np.ndarray:
    """arr[start:stop]. A memory-mapped file is read with plain file reads instead, so that no
    pages stay mapped: the resident size then does not grow with the file (1000 VWW samples
    are 110 MB)."""
    if isinstance(arr, np.memmap) and arr.filename and arr.flags.c_contiguous:
        stop = min(stop, arr.shape[0])
        per_row = int(np.prod(arr.shape[1:], dtype=np.int64))
        with open(arr.filename, "rb") as f:
            f.seek(arr.offset + start * per_row * arr.dtype.itemsize)
            data = np.fromfile(f, arr.dtype, count=max(stop - start, 0) * per_row)
        return data.reshape((max(stop - start, 0),) + tuple(arr.shape[1:]))
    return arr[start:stop]


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
    arr = arr.astype(v.dtype, copy=False)  # no copy (and memory map kept) when the dtype matches
    if np.issubdtype(arr.dtype, np.floating):
        # chunked, so a memory-mapped file is never materialised as a whole
        peaks = []
        for i in range(0, arr.shape[0], _CHUNK):
            chunk = rows(arr, i, i + _CHUNK)
            if not np.all(np.isfinite(chunk)):
                raise CalibrationError(f"calibration file {path}: input {v.name!r} contains NaN or Inf")
            peaks.append(np.abs(chunk.reshape(chunk.shape[0], -1)).max(axis=1, initial=0.0))
        _check_outlier_sample(np.concatenate(peaks), v, path)
    return arr


# A sample whose largest |value| is this many times the typical sample's cannot be data from the
# same source: kept, its range would make the input's int8 step so wide that every normal
# sample rounds to a few codes (fuzz seed 2, case 623: one value 1e20 in KWS's file, exit 0,
# outputs all wrong).
OUTLIER_FACTOR = 1e4


def _check_outlier_sample(peaks: np.ndarray, v, path: Path) -> None:
    nonzero = peaks[peaks > 0]
    if nonzero.size < 4:
        return
    typical = float(np.median(nonzero))
    worst = int(np.argmax(peaks))
    if peaks[worst] > OUTLIER_FACTOR * typical:
        raise CalibrationError(f"calibration file {path}: input {v.name!r} sample {worst} reaches "
                               f"|x| = {peaks[worst]:.3g}, {peaks[worst] / typical:.2g} times the typical sample's "
                               f"largest value ({typical:.3g}): a corrupt sample? Remove it (kept, it would make "
                               "the int8 input step so wide that normal inputs round to a few codes)")


SampleSource = "str | os.PathLike | np.ndarray | Mapping[str, np.ndarray]"


def source_name(source) -> str:
    """How a sample source is named in messages and reports: the file name, or "<array>"."""
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name
    return "<arrays>" if isinstance(source, Mapping) else "<array>"


DEFAULT_MAX_BYTES = 4096 << 20  # largest array a calibration file may make qcc allocate (--max-memory)


def _npz_member_header(zf: zipfile.ZipFile, member: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of an .npz member from its .npy header, without reading the data."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    with zf.open(member) as f:
        version = np.lib.format.read_magic(f)
        if version not in readers:
            raise ValueError(f"unsupported .npy format version {version} in member {member!r}")
        shape, _, dtype = readers[version](f)
    return tuple(shape), np.dtype(dtype)


def _read_sample_file(path: Path, names: list[str], max_bytes: int):
    """An .npy (memory-mapped, never read whole) or the needed members of an .npz, each checked
    (numeric dtype, size within `max_bytes`) before anything is allocated."""
    if not path.is_file():
        raise CalibrationError(f"calibration file {path} does not exist")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                members = {m[:-4]: m for m in zf.namelist() if m.endswith(".npy")}
                missing = [name for name in names if name not in members]
                if missing:
                    raise CalibrationError(f"{path} has no array for input(s) {missing} (keys: {sorted(members)})")
                data = {}
                for name in names:  # other members are never read
                    shape, dtype = _npz_member_header(zf, members[name])
                    _check_header(path, name, shape, dtype, max_bytes)
                    with zf.open(members[name]) as f:
                        data[name] = np.lib.format.read_array(f, allow_pickle=False)
                return data
        arr = np.load(path, allow_pickle=False, mmap_mode="r")
        _check_header(path, None, arr.shape, arr.dtype, None)
        if arr.nbytes <= SMALL_FILE_BYTES and isinstance(arr, np.memmap):
            return np.array(arr)  # one read instead of one per sample (see `rows`)
        return arr
    except CalibrationError:
        raise
    except Exception as e:  # any malformed file: numpy, zipfile and the OS raise many types
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "allow_pickle" in first or "pickle" in first.lower():
            first = "not in .npy format: numpy would read it as pickled Python objects, which qcc never loads"
        raise CalibrationError(f"{path} is not a readable .npy/.npz file of numbers ({first})") from None


def _check_header(path: Path, member: str | None, shape, dtype: np.dtype, max_bytes: int | None) -> None:
    where = f"{path}" + (f" member {member!r}" if member else "")
    if dtype.hasobject or not (np.issubdtype(dtype, np.number) or dtype == np.bool_):
        raise CalibrationError(f"{where} has dtype {dtype}; calibration data must be numbers "
                               "(Python objects are never loaded)")
    if any(int(d) < 0 for d in shape):
        raise CalibrationError(f"{where} declares a negative dimension {tuple(shape)}")
    size = int(np.prod([int(d) for d in shape], dtype=object)) * dtype.itemsize
    if max_bytes is not None and size > max_bytes:
        raise CalibrationError(f"{where} declares {size / 2**30:.1f} GiB ({tuple(shape)} {dtype}), over the "
                               f"{max_bytes / 2**30:.1f} GiB limit (--max-memory)")


def load_samples(source, graph: Graph, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, np.ndarray]:
    """Load and check calibration/evaluation samples: {input name: array [N, ...]}.

    `source` is a file (`.npy` for a one-input model, samples on axis 0, or `.npz` keyed
    by input name), an array, or a dict of arrays keyed by input name. `.npy` arrays stay
    memory-mapped when their dtype is the input's; of an `.npz` only the members named like
    inputs are read, each after its header is checked against `max_bytes`.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        data = _read_sample_file(path, [v.name for v in graph.inputs], max_bytes)
    elif isinstance(source, (np.ndarray, Mapping)):
        path, data = Path(source_name(source)), source
    else:
        raise CalibrationError(f"calibration data must be a .npy/.npz file, an array or a dict of arrays, "
                               f"not {type(source).__name__}")
    if isinstance(data, np.ndarray):
        if len(graph.inputs) != 1:
            raise CalibrationError(f"{path} is a single array but the model has {len(graph.inputs)} "
                                   f"inputs {[v.name for v in graph.inputs]}: use an .npz keyed by input name")
        arrays = {graph.inputs[0].name: data}
    else:
        arrays = {k: np.asarray(a) for k, a in data.items()}
        missing = [v.name for v in graph.inputs if v.name not in arrays]
        if missing:
            raise CalibrationError(f"{path} has no array for input(s) {missing} (keys: {sorted(arrays)})")
    out = {v.name: _check_array(arrays[v.name], v, path) for v in graph.inputs}
    counts = {k: a.shape[0] for k, a in out.items()}
    if len(set(counts.values())) > 1:
        raise CalibrationError(f"{path}: inputs have different sample counts {counts}")
    return out


def sample_count(samples: dict[str, np.ndarray], graph: Graph, limit: int | None = None) -> int:
    """Number of feeds `iterate_samples` yields."""
    n = next(iter(samples.values())).shape[0] // graph.inputs[0].shape[0]
    return n if limit is None else min(n, limit)


def iterate_samples(samples: dict[str, np.ndarray], graph: Graph, limit: int | None = None,
                    indices: Iterable[int] | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Yield one feed dict per sample, batch dimension restored to the model's."""
    batch = graph.inputs[0].shape[0]
    if indices is None:
        indices = range(sample_count(samples, graph, limit))
    for i in indices:
        yield {v.name: np.ascontiguousarray(rows(samples[v.name], i * batch, (i + 1) * batch), dtype=v.dtype)
               for v in graph.inputs}
