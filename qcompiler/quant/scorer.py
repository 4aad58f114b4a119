"""Scoring candidates of the `--activations auto` search (qcompiler/quant/mixed.py): output SQNR
of integer graphs on fixed feeds, stacked where the kernels allow it, resumed from a remembered
run, and judged by `robust_sqnr_db` rather than the plain pooled SQNR."""
from __future__ import annotations

import numpy as np

from qcompiler.ir import Graph

# the SQNR the search compares with the goal is not the pooled SQNR of its samples but the
# lowest pooled SQNR over every reweighting of them that weighs no sample more than WEIGHT_CAP
# times its share (`robust_sqnr_db`; ~ the pooled SQNR of the hardest 1/WEIGHT_CAP of the
# samples): evaluation data may hold more hard inputs than the calibration set (AD: 68 % of its
# evaluation windows are perturbed, 25 % of its calibration windows), and the samples that set
# the ranges flatter the ranges (bench/int16.md: the pooled estimate read AD's all-int8 3.3 dB
# above its evaluation set)
WEIGHT_CAP = 2.0


def _qkey(v):
    q = v.quant
    return None if q is None else (q.dtype.str, q.scale.tobytes(), q.zero_point.tobytes())


def robust_sqnr_db(signal: np.ndarray, noise: np.ndarray, cap: float = WEIGHT_CAP) -> float:
    """The lowest pooled output SQNR (sum of signal / sum of noise powers) over every
    reweighting of the samples that gives no sample more than `cap` times its share (weights
    in [0, cap / n], summing to 1): the SQNR still reached when the data met later holds up to
    `cap` times as many inputs like the hardest ones. The worst mix weighs the 1/cap share of
    samples with the largest noise - rho * signal fully, rho being the bound's noise-to-signal
    ratio (Dinkelbach's iteration on the linear-fractional program, exact in a few steps);
    cap 1 is the plain pooled SQNR."""
    s, n = np.asarray(signal, np.float64), np.asarray(noise, np.float64)
    share = len(s) / max(float(cap), 1.0)
    whole, part = int(np.floor(share)), share - np.floor(share)
    rho = float(n.sum() / max(s.sum(), 1e-300))
    for _ in range(64):
        order = np.argsort(-(n - rho * s), kind="stable")
        w = np.zeros(len(s))
        w[order[:whole]] = 1.0
        if whole < len(s) and part > 1e-12:
            w[order[whole]] = part
        new = float((w * n).sum() / max((w * s).sum(), 1e-300))
        if new <= rho * (1 + 1e-12):
            break
        rho = new
    return float(-10 * np.log10(max(rho, 1e-30)))


# integer kernels that compute every sample of a stacked batch independently (the others --
# reshapes with a batch-1 target shape, ... -- run sample by sample inside a batched run)
BATCH_SAFE = frozenset({"Conv", "Gemm", "Relu", "Clip", "Add", "Sub", "Mul", "MaxPool", "AveragePool",
                        "GlobalAveragePool", "GlobalMaxPool", "Softmax", "Sigmoid", "Tanh", "Concat",
                        "Identity", "Dropout", "LeakyRelu", "HardSwish", "Requantize"})


def _batchable(n, count: int) -> bool:
    if n.op not in BATCH_SAFE or int(n.attrs.get("axis", 1)) == 0:
        return False
    acts = [v for v in n.inputs if v is not None and not v.is_constant] + list(n.outputs)
    if any(v.shape is None or len(v.shape) == 0 or v.shape[0] != 1 for v in acts):
        return False
    rank = len(acts[0].shape)
    if any(len(v.shape) != rank for v in acts):
        return False
    if n.op in ("Conv", "Gemm"):
        return True
    return all(v.data.ndim < rank or v.data.shape[0] == 1 for v in n.inputs if v is not None and v.is_constant)


class Scorer:
    """Output SQNR of integer graphs on fixed feeds (batch-1 graphs; the samples run stacked
    through the kernels that allow it, `BATCH_SAFE`, one by one through the others). A run can
    be remembered under a name (`remember`) and later runs started from it (`cached`): the
    leading nodes whose output parameters and constants (weights, corrected biases) equal the
    remembered graph's are not recomputed -- their outputs come from the remembered run (the
    int8 part of a candidate ahead of its first int16 node)."""

    def __init__(self, float_outputs: list[dict], feeds: list[dict]):
        self.feeds, self.refs = feeds, float_outputs
        self.bases: dict[str, tuple[dict, dict, int]] = {}   # name -> (node constants, tensor -> (quant key, stacked array), samples)
        self.runs = 0
        self.nodes_run = 0
        self.seconds: dict[str, float] = {}
        self.batched, self.checked = True, set()   # node kinds whose stacked run was checked
        self.cap, self.last = WEIGHT_CAP, {}

    @staticmethod
    def _consts(q: Graph) -> dict:
        return {n.name: [v.data if v is not None and v.is_constant else None for v in n.inputs] for n in q.nodes}

    @staticmethod
    def _same(n, consts: dict) -> bool:
        old = consts.get(n.name)
        if old is None or len(old) != len(n.inputs):
            return False
        for v, o in zip(n.inputs, old):
            c = v.data if v is not None and v.is_constant else None
            if (c is None) != (o is None) or (c is not None and (c is not o) and
                                             (c.shape != o.shape or c.dtype != o.dtype or not np.array_equal(c, o))):
                return False
        return True

    def _skip(self, q: Graph, base) -> int:
        """How many leading nodes of q the remembered run `base` already computed."""
        if base is None:
            return 0
        consts, env, _ = base
        for i, n in enumerate(q.nodes):
            if n.op == "Requantize" or not all(o.name in env and env[o.name][0] == _qkey(o) for o in n.outputs) \
                    or not self._same(n, consts):
                return i
        return len(q.nodes)

    def _run(self, q: Graph, count: int, base: dict | None, skip: int, batched: bool) -> dict:
        """{tensor: stacked int array} of q on the first `count` feeds."""
        from qcompiler.interp import INT_KERNELS
        env: dict[str, np.ndarray] = {}
        for v in q.inputs:
            env[v.name] = v.quant.quantize(np.concatenate([self.feeds[i][v.name] for i in range(count)]))

        def get(v):
            return env[v.name] if v.name in env else base[v.name][1][:count]
        for n in q.nodes[skip:]:
            args = [None if v is None else v.data if v.is_constant else get(v) for v in n.inputs]
            kernel = INT_KERNELS[n.op]
            if batched and _batchable(n, count):
                outs = kernel(n, args)
            else:
                acts = [v is not None and not v.is_constant for v in n.inputs]
                parts = [kernel(n, [a[i:i + 1] if act else a for a, act in zip(args, acts)]) for i in range(count)]
                outs = [np.concatenate(p) for p in zip(*parts)]
            for v, arr in zip(n.outputs, outs):
                env[v.name] = arr
            self.nodes_run += 1
        if base is not None:
            for v in q.values():
                if v.name not in env and v.name in base:
                    env[v.name] = base[v.name][1][:count]
        return env

    def score(self, q: Graph, samples: int | None = None, cached: str | None = None,
              remember: str | None = None, robust: bool = True) -> float:
        """Output SQNR of q on the first `samples` feeds: `robust_sqnr_db` (robust) or pooled.
        Both are kept in `last` ({"robust": dB, "pooled": dB})."""
        n = len(self.feeds) if samples is None else min(samples, len(self.feeds))
        base = self.bases.get(cached) if cached else None
        if base is not None and base[2] < n:
            base = None
        kinds = {(m.op, _qkey(m.outputs[0])[0] if m.outputs[0].quant is not None else "") for m in q.nodes}
        if self.batched and not kinds <= self.checked:
            self.batched = self.batched_matches(q)
            self.checked |= kinds
        skip = self._skip(q, base)
        env = self._run(q, n, base[1] if skip else None, skip, self.batched)
        if remember:
            self.bases[remember] = (self._consts(q), {v.name: (_qkey(v), env[v.name]) for v in q.values()
                                                      if v.name in env}, n)
        self.runs += 1
        names = [v.name for v in q.outputs]
        outs = {v.name: v.quant.dequantize(env[v.name]) for v in q.outputs}
        signal, noise = np.zeros(n), np.zeros(n)
        for k in names:
            for i in range(n):
                ref = np.asarray(self.refs[i][k], np.float64).ravel()
                err = ref - outs[k][i:i + 1].astype(np.float64).ravel()
                signal[i] += float(ref @ ref)
                noise[i] += float(err @ err)
        pooled = float(10 * np.log10(max(signal.sum(), 1e-300) / max(noise.sum(), 1e-30)))
        self.last = {"pooled": pooled, "robust": robust_sqnr_db(signal, noise, self.cap) if n > 1 else pooled}
        return self.last["robust" if robust else "pooled"]

    def batched_matches(self, q: Graph, count: int = 2) -> bool:
        """The stacked run of q equals its sample-by-sample run (checked on a candidate of
        each kind before the search relies on batching)."""
        a = self._run(q, min(count, len(self.feeds)), None, 0, batched=True)
        b = self._run(q, min(count, len(self.feeds)), None, 0, batched=False)
        return all(np.array_equal(a[v.name], b[v.name]) for v in q.outputs)
