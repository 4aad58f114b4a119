"""Train and export the small sample models in this folder (see README.md).

Rebuild:  pip install torch==2.13.0 scikit-learn onnxruntime
          python models/build_samples.py

Deterministic: fixed seeds, one CPU thread, torch deterministic algorithms.
Only this script needs torch; the qcompiler package does not.
"""
import io
import os
import random
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import sklearn
import torch
import torch.nn as nn
from sklearn.datasets import load_digits

SEED = 0
OUT = os.path.dirname(os.path.abspath(__file__))
N_CALIB, N_EVAL = 200, 300
OPSET = 13

torch.set_num_threads(1)
torch.set_num_interop_threads(1)
torch.use_deterministic_algorithms(True)


def seed_all(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------------- data
def make_data():
    """x = pixels/16 as float32 NCHW [N,1,8,8]; fixed disjoint calib/eval/train split."""
    d = load_digits()
    x = (d.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(SEED).permutation(len(x))
    calib, ev, train = np.split(perm, [N_CALIB, N_CALIB + N_EVAL])
    return (x[train], y[train]), x[calib], (x[ev], y[ev])


# ---------------------------------------------------------------- models
def cbr(cin, cout, k=3, stride=1, groups=1, act=nn.ReLU):
    """Conv (no bias) -> BatchNorm -> activation."""
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout), act()]


def digits_cnn():
    return nn.Sequential(*cbr(1, 8), *cbr(8, 16), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(16 * 4 * 4, 10))


def digits_dwsep():
    # Softmax is appended only for export; training uses the logits.
    return nn.Sequential(
        *cbr(1, 16, act=nn.ReLU6),
        *cbr(16, 16, groups=16), *cbr(16, 32, k=1),             # dw 3x3 + pw 1x1
        *cbr(32, 32, stride=2, groups=32), *cbr(32, 64, k=1),   # dw 3x3 s2 + pw 1x1
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


class ResBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.short = nn.Identity()
        if stride != 1 or cin != cout:  # 1x1 conv + BN projection shortcut
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                       nn.BatchNorm2d(cout))

    def forward(self, x):
        h = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(h)) + self.short(x))


def digits_resnet():
    return nn.Sequential(*cbr(1, 16), ResBlock(16, 16, 1), ResBlock(16, 32, 2),
                         nn.AvgPool2d(4), nn.Flatten(), nn.Linear(32, 10))


# ---------------------------------------------------------------- training
def train(model, x, y, epochs=30, lr=3e-3, bs=64):
    gen = torch.Generator().manual_seed(SEED)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    lossf = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), bs):
            idx = perm[i:i + bs]
            opt.zero_grad()
            loss = lossf(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
        sched.step()
    model.eval()
    return loss.item()


@torch.no_grad()
def torch_out(model, x):
    return model(torch.from_numpy(x)).numpy()


# ---------------------------------------------------------------- export
def export(model, path):
    """TorchScript exporter, opset 13, dynamic batch, BatchNormalization kept.

    With training=EVAL plus constant folding the legacy exporter runs its
    "eval peephole" pass, which fuses Conv+BN.  PRESERVE on a model that is
    in eval mode exports exactly the same inference graph but skips that
    fusion, so BatchNormalization nodes stay while constants are still folded.
    """
    assert not model.training
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation notices
        torch.onnx.export(
            model, (torch.zeros(1, 1, 8, 8),), buf, dynamo=False,
            opset_version=OPSET, input_names=["input"], output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            do_constant_folding=True, training=torch.onnx.TrainingMode.PRESERVE)
    m = drop_initializer_identities(onnx.load_from_string(buf.getvalue()))
    data = m.SerializeToString()
    onnx.checker.check_model(m, full_check=True)
    ops = [n.op_type for n in m.graph.node]
    n_bn = sum(isinstance(mod, nn.BatchNorm2d) for mod in model.modules())
    assert ops.count("BatchNormalization") == n_bn, f"{path}: BN was folded"
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    with open(path, "wb") as f:
        f.write(data)
    return m, data


def drop_initializer_identities(m):
    """The exporter deduplicates bit-identical initializers and re-creates the
    duplicate with an Identity node (digits_resnet: the biases of the two BNs
    feeding the last Add get identical gradients, so they stay equal).  Turn
    such Identity nodes back into plain initializers."""
    inits = {t.name: t for t in m.graph.initializer}
    for n in list(m.graph.node):
        if n.op_type == "Identity" and n.input[0] in inits:
            t = onnx.TensorProto()
            t.CopyFrom(inits[n.input[0]])
            t.name = n.output[0]
            m.graph.initializer.append(t)
            m.graph.node.remove(n)
    return m


def verify(data, model, x):
    """onnxruntime vs torch on batch 1 and the whole eval batch."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    diff = 0.0
    for xb in (x[:1], x):
        got = sess.run(["output"], {"input": xb})[0]
        diff = max(diff, float(np.abs(got - torch_out(model, xb)).max()))
    assert diff < 1e-4, f"onnxruntime differs from torch by {diff}"
    return diff, got


# ---------------------------------------------------------------- main
MODELS = [  # name, builder, append softmax for export, epochs, lr
    ("digits_cnn", digits_cnn, False, 30, 3e-3),
    ("digits_dwsep", digits_dwsep, True, 40, 1e-2),
    ("digits_resnet", digits_resnet, False, 30, 3e-3),
]


def main():
    (xtr, ytr), xcal, (xev, yev) = make_data()
    np.save(os.path.join(OUT, "digits_calib.npy"), xcal)
    np.save(os.path.join(OUT, "digits_eval.npy"), xev)
    np.save(os.path.join(OUT, "digits_eval_labels.npy"), yev)
    print(f"split: train {len(xtr)}, calib {len(xcal)}, eval {len(xev)}")

    rows = []
    for name, build, softmax, epochs, lr in MODELS:
        seed_all(SEED)
        net = build()
        loss = train(net, xtr, ytr, epochs, lr)
        model = nn.Sequential(net, nn.Softmax(dim=1)).eval() if softmax else net
        path = os.path.join(OUT, name + ".onnx")
        m, data = export(model, path)
        diff, ort_out = verify(data, model, xev)
        acc = float((torch_out(model, xev).argmax(1) == yev).mean())
        ort_acc = float((ort_out.argmax(1) == yev).mean())
        params = sum(p.numel() for p in model.parameters())
        ops = sorted(set(n.op_type for n in m.graph.node))
        print(f"{name}: final train loss {loss:.4f}, ort max|diff| {diff:.2e}, "
              f"{len(m.graph.node)} nodes: {' '.join(n.op_type for n in m.graph.node)}")
        rows.append((name + ".onnx", ", ".join(ops), params, len(data), acc, ort_acc))

    print("\n| model | ONNX op types | params | size (bytes) | float test acc (torch) | test acc (onnxruntime) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:,} | {r[3]:,} | {r[4]:.2%} | {r[5]:.2%} |")
    print(f"\ntest = digits_eval.npy ({len(xev)} samples). Versions: python "
          f"{sys.version.split()[0]}, torch {torch.__version__}, onnx {onnx.__version__}, "
          f"onnxruntime {ort.__version__}, scikit-learn {sklearn.__version__}, numpy {np.__version__}")


if __name__ == "__main__":
    main()
