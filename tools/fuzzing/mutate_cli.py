"""Mutators of the command line (family "cli"), the output path ("out") and external data
("ext"), and the unmutated control case ("baseline")."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from .case import HUGE, Ctx, nm, real_inputs


# ----- mutators: CLI options

NAMES = ["../x", "../../x", "{BASE}/abs/x", "{BASE}/", ".", "..", "_", "\t", "a\tb", "modèle", "模型",
         "n" * 251, "n" * 300, "a/b", "", "*/ int evil; /*", "x y", 'x"y', "x\\y", "a\nb", "report",
         "layer_sqnr", "-", "con", "model", "~x", "$HOME"]


def o_name(c: Ctx):
    v = c.choice(NAMES)
    c.extra += ["--name", v]
    c.note(f"--name {v[:40]!r}{'...' if len(v) > 40 else ''} ({len(v)} chars)")


def o_input_range(c: Ctx):
    v = c.choice(["1", "1,0", "0,0", "nan,1", "-inf,inf", "0,1e39", "0,3e38", "1,2,3", ",", "a,b", "",
                  "-1e-45,1e-45", "0,1e-30", "-3e38,3e38", "0x10,1", "1_0,2", "-1,1"])
    c.data_free = True
    c.range_arg = v
    c.range_sep = v == "-1,1"  # `--input-range -1,1`: argparse takes -1,1 for an option
    c.note(f"--input-range {v!r} (data-free)")


def o_input_shape(c: Ctx):
    d = [1] + list(c.spec.calib.shape[1:])
    name = c.spec.input_name

    def dims(*values) -> str:
        return ",".join(map(str, values))

    shapes = {"zero": f"{name}={dims(0, *d[1:])}", "neg": f"{name}={dims(-1, *d[1:])}",
              "wrong": f"{name}={dims(*d[:-1], d[-1] + 1)}", "batch2": f"{name}={dims(2, *d[1:])}",
              "huge": f"{name}={dims(10 ** 9, *d[1:])}", "rank": f"{name}={dims(*d[:-1])}",
              "empty": f"{name}=", "noname": f"={dims(*d)}", "unknown": "nope=1,2",
              "float": f"{name}={dims('1.5', *d[1:])}", "overflow": f"{name}={dims(10 ** 20 - 1, *d[1:])}",
              "same": f"{name}={dims(*d)}"}
    op = c.choice(list(shapes))
    v = shapes[op]
    c.extra += ["--input-shape", v]
    c.note(f"--input-shape {v!r}")
    if op in ("batch2", "huge", "wrong", "rank"):
        c.case.calib_array = None


def o_numbers(c: Ctx):
    op = c.choice(["percentile", "max_calib", "percentile", "max_calib"])
    if op == "percentile":
        v = c.choice(["0", "100", "150", "-1", "nan", "inf", "1e-300"])
        c.extra += ["--percentile", v]
    else:
        v = c.choice(["0", "-1", "1", "99999999999999999999", "2"])
        c.extra += ["--max-calib-samples", v]
    c.note(f"--{op.replace('_', '-')} {v}")


def o_graph_opts(c: Ctx):
    op = c.choice(["outputs", "passes", "disable", "dump"])
    if op == "outputs":
        m = c.model
        mid = c.choice(list(m.graph.node)).output[0]
        v = c.choice(["nope", ",", mid, f"{mid},{mid}", m.graph.output[0].name + ",nope", "", real_inputs(m)[0].name])
        c.extra += ["--outputs", v]
    elif op == "passes":
        v = c.choice(["", "nope", ",,", "dead_code", "fold_batchnorm,dead_code", "fuse_activation",
                      "dead_code,dead_code,canonicalize"])
        c.extra += ["--passes", v]
    elif op == "disable":
        v = c.choice(["nope", "fold_batchnorm", "canonicalize,fold_constants", "dead_code", ""])
        c.extra += ["--disable-pass", v]
    else:
        v = c.choice(["fold_batchnorm", "nope", "dead_code"])
        c.extra += ["--dump-after", v, "--dump-dir", "dump"]
        c.case.dump_dir = "w/dump"
    c.note(f"--{op} {v!r}")


def o_target_io(c: Ctx):
    # op -> (target, None: unchanged; extra options)
    options = {"tflite": ("tflite", []), "ncnn": ("ncnn", []), "bogus": ("bogus", []),
               "io_float": (None, ["--io", "float"]), "uint8": (None, ["--input-dtype", "uint8"]),
               "io_float_uint8": (None, ["--io", "float", "--input-dtype", "uint8"]),
               "ncnn_io": ("ncnn", ["--io", "float"]), "unknown_opt": (None, ["--bogus-option"]),
               "both_calib_range": (None, [f"--input-range={c.range_arg}"]), "tvm_target": (None, None)}
    op = c.choice(list(options))
    target, extra = options[op]
    c.target = target or c.target
    c.extra += extra if extra is not None else ["--tvm-target", c.choice(["{", '{"kind": 1}', "nope"])]
    c.note(f"options: {op}")


# what the model argument names -> (the argument, what the sandbox holds there)
MODEL_PATHS = {"missing": ("nope.onnx", []), "directory": ("dir.onnx", [("dir", "w/dir.onnx")]),
               "no_suffix": ("model", []), "empty": ("", []), "calib_as_model": ("calib.npy", []),
               "dangling": ("link.onnx", [("symlink", "w/link.onnx", "{BASE}/w/gone.onnx")]), "dash": ("-", [])}


def o_model_path(c: Ctx):
    op = c.choice(list(MODEL_PATHS))
    c.model_arg, setup = MODEL_PATHS[op]
    c.case.setup += setup
    if op == "no_suffix":
        c.model_file = "w/model"
    c.note(f"model path: {op} ({c.model_arg!r})")


CLI_MUTATORS = [(o_name, 6), (o_input_range, 3), (o_input_shape, 3), (o_numbers, 2), (o_graph_opts, 2),
                (o_target_io, 3), (o_model_path, 1)]


# ----- mutators: output paths

def p_out(c: Ctx):
    case = c.case
    keep, name = ("file", "w/out/keep.txt", b"keep"), c.spec.name
    # op -> (-o as given, None: qcc's default; what the sandbox holds beforehand)
    outs = {"readonly_parent": ("ro/out", [("dir", "w/ro"), ("readonly", "w/ro")]),
            "dangling_symlink": ("out", [("symlink", "w/out", "{BASE}/w/missing_target")]),
            "symlink_to_dir": ("out", [("dir", "outside/target"), ("symlink", "w/out", "{BASE}/outside/target")]),
            "through_file": ("afile/out", [("file", "w/afile", b"x")]),
            "is_file": ("out", [("file", "w/out", b"precious")]),
            "long_250": ("o" * 250, []), "long_256": ("o" * 256, []), "long_path": ("/".join(["p" * 200] * 25), []),
            "report_json_dir": ("out", [("dir", "w/out"), keep, ("dir", "w/out/report.json")]),
            "unrelated_files": ("out", [("dir", "w/out"), keep, ("file", "w/out/model.tflite", b"old artifact")]),
            "name_collision": ("out", [("dir", "w/out"), ("dir", f"w/out/{name}.tflite"), keep]),
            "dot": (".", []), "empty": ("", []), "trailing_slash": ("out/", []), "nested_new": ("a/b/c/out", []),
            "absolute": ("{BASE}/w/absout", []), "default": (None, []), "unicode": ("ausgäbe_模型", []),
            "tab": ("o\tut", []), "dash": ("-x", []),
            "readonly_existing": ("rout", [("dir", "w/rout"), ("readonly", "w/rout")])}
    op = c.choice(list(outs))
    case.out_arg, setup = outs[op]
    case.setup += setup
    if op == "name_collision":
        c.extra += ["--name", name]
    c.note(f"-o {op}: {case.out_arg if case.out_arg is None else case.out_arg[:50]!r}")


# ----- mutators: external data

def e_external(c: Ctx):
    t = max(c.model.graph.initializer, key=lambda t: len(t.raw_data) or 4 * len(t.float_data))
    raw = t.raw_data or np.asarray(t.float_data, np.float32).tobytes()
    op = c.choice(["inside", "dotdot", "absolute", "symlink_file", "symlink_dir", "missing", "offset_beyond",
                   "length_huge", "length_negative", "location_dir", "self", "bad_number", "abs_inside"])
    loc, offset, length = "weights.bin", None, None
    files = [("file", "w/weights.bin", raw)]
    if op == "dotdot":
        loc, files = "../outside/weights.bin", [("file", "outside/weights.bin", raw)]
        c.case.outside_data = True
    elif op == "absolute":
        loc, files = "{BASE}/outside/weights.bin", [("file", "outside/weights.bin", raw)]
        c.case.outside_data = True
    elif op == "abs_inside":
        loc = "{BASE}/w/weights.bin"
    elif op == "symlink_file":
        files = [("file", "outside/secret.bin", raw), ("symlink", "w/weights.bin", "../outside/secret.bin")]
        c.case.outside_data = True
    elif op == "symlink_dir":
        loc = "sub/weights.bin"
        files = [("file", "outside/weights.bin", raw), ("symlink", "w/sub", "{BASE}/outside")]
        c.case.outside_data = True
    elif op == "missing":
        files = []
    elif op == "offset_beyond":
        offset = len(raw) + 16
    elif op == "length_huge":
        length = HUGE * 4
    elif op == "length_negative":
        length = -4
    elif op == "location_dir":
        loc, files = "wdir", [("dir", "w/wdir")]
    elif op == "self":
        loc, files, length = "model.onnx", [], len(raw)
    elif op == "bad_number":
        offset = "abc"
    t.ClearField("raw_data")
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    del t.external_data[:]
    for k, v in (("location", loc), ("offset", offset), ("length", length)):
        if v is not None:
            e = t.external_data.add()
            e.key, e.value = k, str(v)
    c.case.setup += files
    c.model_file = None
    c.case.setup.append(("onnx", "w/model.onnx", c.model))  # {BASE} filled in at materialization
    c.note(f"initializer {nm(t.name)} ({len(raw)} bytes) as external data: {op} (location {loc!r}"
           f"{f', offset {offset}' if offset is not None else ''}{f', length {length}' if length is not None else ''})")
    if op in ("inside", "abs_inside"):
        c.case.same_function = True


def baseline(c: Ctx):
    c.note("no mutation (control)")
    c.case.same_function = True
