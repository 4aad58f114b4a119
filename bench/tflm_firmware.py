"""TFLite Micro firmware on a Cortex-M4 (QEMU mps2-an386): flash, RAM, instructions per invoke.

The baseline for issue 15's interpreter-free C backend. Per model (digits_cnn and the MLPerf
Tiny KWS, VWW, IC, AD, compiled with qcc's defaults as bench/tflm.py does) and per TFLM build
(reference kernels or CMSIS-NN; everything at -Os, or TFLM's default -Os core / -O2 kernels;
BUILD_TYPE=release, i.e. without error strings, as shipped), it links
bench/tflm_firmware_main.cc + the model + examples/mps2/ (startup, linker script) into a
firmware, runs it in QEMU and reports:

- flash: text + rodata + data of the ELF (`arm-none-eabi-size -A`), split with the linker map
  into the TFLM library (code and constants linked from libtensorflow-microlite.a), libc /
  libgcc / libm, the model (qcc's flatbuffer array) and the rest (main, startup);
- RAM: .data + .bss (holds the static tensor arena of qcc's declared size) + the stack
  high-water mark the firmware measures (stack painting); also the arena TFLM used on this
  32-bit target;
- instructions per Invoke, counted in QEMU by the TCG plugin bench/qemu_insn_count.c
  (between two calls of an empty marker function), second invoke on the same input;
- the firmware compares its output bit for bit with the TFLM Python wheel's output on the same
  int8 input, and `qcc verify` checks the wheel against qcc's integer reference on that sample.

Needs TFLM_SRC: a tflite-micro checkout whose tensorflow/lite/micro/tools/make/downloads/
holds the third-party sources (examples/README.md pins the commits and says how to get them;
this script downloads nothing), a `python3` with Pillow and numpy on PATH for TFLM's make,
arm-none-eabi-gcc + newlib, qemu-system-arm, and a host gcc for the plugin. When something is
missing it says what and exits 0 (skipped). Libraries are built in TFLM_SRC/gen* on first use
(about 10 min each on 2 cores).

  TFLM_SRC=/work/tflm-src python -m bench.tflm_firmware [--models kws,ad] [--configs ref-Os]
      [--out bench/tflm_firmware.md] [--keep DIR (keeps the qcc outputs and firmware builds)]
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.common import MODELS, MLPERF, SHARED, machine, mlperf_data, table

ROOT = Path(__file__).resolve().parents[1]
MPS2 = ROOT / "examples" / "mps2"
MAIN = Path(__file__).resolve().parent / "tflm_firmware_main.cc"
PLUGIN_SRC = Path(__file__).resolve().parent / "qemu_insn_count.c"
MAKEFILE = "tensorflow/lite/micro/tools/make/Makefile"
DOWNLOADS = "tensorflow/lite/micro/tools/make/downloads"
MACHINE = "mps2-an386"  # Cortex-M4
TARGET = {"TARGET": "cortex_m_generic", "TARGET_ARCH": "cortex-m4", "TARGET_TOOLCHAIN_ROOT": "/usr/bin/",
          "BUILD_TYPE": "release"}
_OS = {"KERNEL_OPTIMIZATION_LEVEL": "-Os", "THIRD_PARTY_KERNEL_OPTIMIZATION_LEVEL": "-Os", "BASE_GENDIR": "gen_Os"}
CONFIGS = {  # name -> make variables on top of TARGET
    "ref-Os": {**_OS},
    "ref": {},
    "cmsis_nn-Os": {"OPTIMIZED_KERNEL_DIR": "cmsis_nn", **_OS},
    "cmsis_nn": {"OPTIMIZED_KERNEL_DIR": "cmsis_nn"},
}
CONFIG_NOTES = {
    "ref-Os": "reference kernels, all TFLM code at -Os",
    "ref": "reference kernels, TFLM's default levels (-Os core, -O2 kernels)",
    "cmsis_nn-Os": "CMSIS-NN kernels, all at -Os",
    "cmsis_nn": "CMSIS-NN kernels, TFLM's default levels (-O2 kernels and CMSIS-NN)",
}
MODEL_NAMES = ["digits_cnn", "kws", "vww", "ic", "ad", "kws_official", "vww_official", "ic_official", "ad_official"]
NEEDED = ["flatbuffers", "gemmlowp", "ruy", "kissfft", "pigweed", "cmsis", "cmsis/Cortex_DFP", "cmsis_nn"]


def missing_requirements(tflm: Path | None) -> list[str]:
    if tflm is None:
        return ["TFLM_SRC is not set (path of a tflite-micro checkout, see examples/README.md)"]
    if not (tflm / MAKEFILE).is_file():
        return [f"TFLM_SRC={tflm} has no {MAKEFILE}"]
    why = [f"{tflm / DOWNLOADS / d} is missing (examples/README.md lists the third-party sources)"
           for d in NEEDED if not (tflm / DOWNLOADS / d).is_dir()]
    why += [f"{tool} not found" for tool in ("arm-none-eabi-g++", "arm-none-eabi-size", "qemu-system-arm", "gcc",
                                             "make", "python3") if shutil.which(tool) is None]
    if shutil.which("python3") and subprocess.run(["python3", "-c", "import PIL, numpy"], capture_output=True).returncode:
        why.append("the python3 on PATH lacks Pillow or numpy, which TFLM's make runs")
    return why


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if res.returncode != 0:
        raise RuntimeError(f"{shlex.join(map(str, cmd))} failed ({res.returncode}):\n{res.stdout[-3000:]}"
                           f"\n{res.stderr[-3000:]}")
    return res


class TflmBuild:
    """One TFLM library build (make microlite) and the flags to compile against it."""

    def __init__(self, tflm: Path, config: str):
        self.tflm, self.config = tflm, config
        self.vars = {**TARGET, **CONFIGS[config]}
        args = ["make", "-s", "-f", MAKEFILE] + [f"{k}={v}" for k, v in self.vars.items()]
        printed = _run(args + ["print-CXXFLAGS", "print-CCFLAGS", "print-INCLUDES", "print-MICROLITE_LIB_PATH"],
                       cwd=tflm).stdout
        values = dict(re.findall(r"^(CXXFLAGS|CCFLAGS|INCLUDES|MICROLITE_LIB_PATH)=(.*)$", printed, re.M))
        self.lib = tflm / values["MICROLITE_LIB_PATH"]
        absolute = lambda flags: [f"-I{tflm / f[2:]}" if f.startswith("-I") else f for f in shlex.split(flags)]
        self.cxxflags = absolute(values["CXXFLAGS"]) + absolute(values["INCLUDES"])
        self.ccflags = absolute(values["CCFLAGS"])
        self.cpu = [f for f in shlex.split(values["CXXFLAGS"]) if f.startswith(("-mcpu", "-mfpu", "-mfloat-abi", "-mthumb"))]
        self.args = args

    def build(self) -> None:
        if not self.lib.is_file():
            print(f"tflm_firmware: building {self.lib} ({self.config}), about 10 min", file=sys.stderr)
            _run(["nice", "-n", "10"] + self.args + [f"-j{os.cpu_count() or 2}", "microlite"], cwd=self.tflm)

    def code_bytes(self) -> int:
        """text + data of every object in the archive (an upper bound: --gc-sections keeps less)."""
        out = _run(["arm-none-eabi-size", "-t", str(self.lib)]).stdout.strip().splitlines()[-1].split()
        return int(out[0]) + int(out[1])


def compile_model(name: str, work: Path) -> tuple[Path, np.ndarray, bool]:
    """qcc's default tflm compile (as bench/tflm.py): output dir, one float eval sample, input NHWC?"""
    if name in MLPERF:
        onnx_file, kind, _ = MLPERF[name]
        onnx, calib, sample = SHARED / onnx_file, mlperf_data(kind, "calib"), mlperf_data(kind, "eval")[:1]
    else:
        onnx, calib, sample = MODELS / f"{name}.onnx", np.load(MODELS / "digits_calib.npy"), np.load(MODELS / "digits_eval.npy")[:1]
    out = work / name
    if not (out / "report.json").is_file():
        np.save(work / f"{name}_calib.npy", calib)
        _run([sys.executable, "-m", "qcompiler", str(onnx), "--target", "tflm", "--calib",
              str(work / f"{name}_calib.npy"), "--name", name, "-o", str(out)], cwd=ROOT)
    report = json.loads((out / "report.json").read_text())
    nhwc = report.get("io_layout", {}).get(report["inputs"][0]["name"]) == "NHWC"
    return out, sample.astype(np.float32), nhwc


OP_RESOLVER_METHODS = {"AVERAGE_POOL_2D": "AveragePool2D", "CONV_2D": "Conv2D", "DEPTHWISE_CONV_2D": "DepthwiseConv2D",
                       "FULLY_CONNECTED": "FullyConnected", "RESHAPE": "Reshape", "SOFTMAX": "Softmax",
                       "QUANTIZE": "Quantize", "DEQUANTIZE": "Dequantize", "ADD": "Add", "MAX_POOL_2D": "MaxPool2D"}


def write_official(name: str, work: Path, arena: int) -> tuple[Path, np.ndarray, bool]:
    """The official MLPerf Tiny int8 .tflite as `<name>_official_*` files shaped like qcc's (same macros)."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema
    _, kind, official = MLPERF[name]
    art = f"{name}_official"
    out = work / art
    out.mkdir(exist_ok=True)
    data = (SHARED / official).read_bytes()
    (out / f"{art}.tflite").write_bytes(data)
    codes = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    ops = sorted({codes[max(c.builtinCode, c.deprecatedBuiltinCode)] for c in model.operatorCodes})
    upper, camel = art.upper(), "".join(w.capitalize() for w in art.split("_"))
    (out / f"{art}_model_data.h").write_text(
        f"#include <stdint.h>\n#ifdef __cplusplus\nextern \"C\" {{\n#endif\n"
        f"extern const unsigned char {art}_model_data[];\n#define {upper}_TENSOR_ARENA_SIZE {arena}\n"
        f"#ifdef __cplusplus\n}}\n#endif\n")
    if not (out / f"{art}_model_data.c").is_file():  # the bytes do not depend on the arena size
        (out / f"{art}_model_data.c").write_text(
            f'#include "{art}_model_data.h"\n__attribute__((aligned(16))) const unsigned char '
            f"{art}_model_data[] = {{{','.join(map(str, data))}}};\n")
    adds = "".join(f"  if (r.Add{OP_RESOLVER_METHODS[op]}() != kTfLiteOk) return kTfLiteError;\n" for op in ops)
    (out / f"{art}_op_resolver.h").write_text(
        f'#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"\n'
        f"using {camel}OpResolver = tflite::MicroMutableOpResolver<{len(ops)}>;\n"
        f"inline TfLiteStatus {art}_register_ops({camel}OpResolver& r) {{\n{adds}  return kTfLiteOk;\n}}\n")
    return out, mlperf_data(kind, "eval")[:1].astype(np.float32), True


def reference_io(tflite: Path, sample: np.ndarray, nhwc: bool) -> tuple[np.ndarray, np.ndarray]:
    """int8 input (TFLite layout) for the float sample, and the TFLM wheel's int8 output for it."""
    from tflite_micro.python.tflite_micro import runtime
    x = sample.transpose(0, 2, 3, 1) if nhwc and sample.ndim == 4 else sample  # ONNX NCHW -> TFLite NHWC
    interp = runtime.Interpreter.from_file(str(tflite))
    detail = interp.get_input_details(0)
    scale = float(detail["quantization_parameters"]["scales"][0])
    zp = int(detail["quantization_parameters"]["zero_points"][0])
    q = np.clip(np.round(x.astype(np.float64) / scale) + zp, -128, 127).astype(np.int8)  # as qcc verify
    interp.set_input(q.reshape(detail["shape"]), 0)
    interp.invoke()
    return q.ravel(), np.asarray(interp.get_output(0)).astype(np.int8).ravel()


def qcc_verify(out: Path, sample: np.ndarray) -> bool:
    """`qcc verify` on the sample: the wheel's TFLM equals qcc's integer reference bit for bit?"""
    path = out.parent / f"{out.name}_sample.npy"
    np.save(path, sample)
    res = _run([sys.executable, "-m", "qcompiler", "verify", str(out), "--data", str(path), "--no-litert"], cwd=ROOT)
    return bool(json.loads(res.stdout)["tflm"]["bit_exact"])


def _c_array(name: str, values: np.ndarray) -> str:
    body = ",".join(str(int(v)) for v in values)
    # own section: the linker map shows these test vectors apart, and flash excludes them
    return f'__attribute__((section(".rodata.bench_io"))) static const int8_t {name}[{values.size}] = {{{body}}};\n'


def write_glue(out: Path, name: str, q_in: np.ndarray, expected: np.ndarray, dest: Path) -> None:
    """bench_model.h: maps qcc's generated names onto the BENCH_* names the firmware uses."""
    resolver = (out / f"{name}_op_resolver.h").read_text()
    header = (out / f"{name}_model_data.h").read_text()
    resolver_type = re.search(r"using (\w+) = tflite::MicroMutableOpResolver", resolver).group(1)
    register = re.search(r"inline TfLiteStatus (\w+)\(", resolver).group(1)
    arena = re.search(r"#define (\w+_TENSOR_ARENA_SIZE) ", header).group(1)
    dest.write_text(
        f'#include <cstdint>\n#include "{name}_model_data.h"\n#include "{name}_op_resolver.h"\n'
        f"#define BENCH_MODEL_DATA {name}_model_data\n#define BENCH_ARENA_SIZE {arena}\n"
        f"#define BENCH_REGISTER_OPS {register}\nusing BenchOpResolver = {resolver_type};\n"
        + _c_array("bench_input", q_in) + _c_array("bench_expected", expected))


def link_firmware(build: TflmBuild, out: Path, name: str, glue: Path, work: Path) -> Path:
    cc, cxx = "arm-none-eabi-gcc", "arm-none-eabi-g++"
    objs = []
    for src, compiler, flags in [(MAIN, cxx, build.cxxflags + [f"-I{glue.parent}", f"-I{out}"]),
                                 (out / f"{name}_model_data.c", cc, build.ccflags),
                                 (MPS2 / "startup.c", cc, build.ccflags)]:
        obj = work / (src.stem + ".o")
        if src.name.endswith("_model_data.c") and obj.is_file() and obj.stat().st_mtime > src.stat().st_mtime:
            objs.append(str(obj))  # model bytes unchanged (arena-size probing relinks many times)
            continue
        _run([compiler, *flags, "-Os", "-c", str(src), "-o", str(obj)])
        objs.append(str(obj))
    elf = work / "firmware.elf"
    _run([cxx, *build.cpu, "-Os", "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
          "-T", str(MPS2 / "mps2.ld"), "-Wl,--gc-sections", f"-Wl,-Map={work / 'firmware.map'}",
          *objs, str(build.lib), "-lm", "-o", str(elf)])
    return elf


FLASH_SECTIONS = (".text", ".rodata", ".init_array", ".ARM.exidx", ".data")


def flash_breakdown(map_file: Path) -> dict[str, int]:
    """Bytes per origin (tflm, libc, model, app, test_io) in the flash output sections, from the linker map."""
    parts = {"tflm": 0, "libc": 0, "model": 0, "app": 0, "test_io": 0}
    text = map_file.read_text()
    text = text[text.index("Linker script and memory map"):]
    section, pending = None, None
    for line in text.splitlines():
        if m := re.match(r"^(\.\S+)", line):
            section = m.group(1)
            continue
        if section not in FLASH_SECTIONS:
            continue
        if m := re.match(r"^ (\S+)\s*$", line):  # input section name alone; address/size/file follow
            pending = m.group(1)
            continue
        m = re.match(r"^ (\S+)?\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)?$", line)
        if not m or (m.group(1) is None and pending is None):
            pending = None
            continue
        size, origin, name = int(m.group(3), 16), (m.group(4) or ""), m.group(1) or pending
        pending = None
        if name == ".rodata.bench_io":
            parts["test_io"] += size
        elif "libtensorflow-microlite.a" in origin:
            parts["tflm"] += size
        elif origin.endswith("_model_data.o"):
            parts["model"] += size
        elif re.search(r"lib(c_nano|c|m|g|gcc|nosys|stdc\+\+_nano|stdc\+\+|supc\+\+_nano|supc\+\+)\.a", origin):
            parts["libc"] += size
        else:
            parts["app"] += size  # main, startup, *fill* padding
    return parts


def section_sizes(elf: Path) -> dict[str, int]:
    out = _run(["arm-none-eabi-size", "-A", str(elf)]).stdout
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\.\S+)\s+(\d+)\s+\d+", out, re.M)}


def symbol_address(elf: Path, symbol: str) -> int:
    for line in _run(["arm-none-eabi-nm", str(elf)]).stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == symbol:
            return int(parts[0], 16) & ~1
    raise RuntimeError(f"{symbol} not in {elf}")


def run_qemu(elf: Path, plugin: Path | None, work: Path) -> dict:
    """Runs the firmware; with the plugin also counts instructions between the bench_mark() calls."""
    log = work / "plugin.log"
    cmd = ["qemu-system-arm", "-M", MACHINE, "-nographic", "-semihosting", "-kernel", str(elf)]
    if plugin is not None:
        cmd += ["-plugin", f"{plugin},mark={symbol_address(elf, 'bench_mark'):#x}", "-d", "plugin", "-D", str(log)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    console = res.stdout + res.stderr  # QEMU writes the semihosting console to stderr when not a tty
    values = {k: int(v) for k, v in re.findall(r"^(\w+) (-?\d+)\s*$", console, re.M)}
    values["exit"], values["ran"] = res.returncode, "AllocateTensors failed" not in console
    if plugin is None:
        return values
    marks = [int(v) for v in re.findall(r"^mark (\d+)", log.read_text(), re.M)]
    if res.returncode not in (0, 1) or len(marks) != 4:
        raise RuntimeError(f"firmware run failed ({res.returncode}): {console[-2000:]}")
    values["insn_first"], values["insn_invoke"] = marks[1] - marks[0], marks[3] - marks[2]
    if values.get("mismatches"):
        print(f"tflm_firmware: {elf}: output differs from the wheel:\n{console}", file=sys.stderr)
    return values


def firmware(build: TflmBuild, out: Path, name: str, q_in, expected, work: Path, plugin: Path | None) -> dict:
    """Links and runs one firmware; sizes from the ELF and the map, the rest from the run (without
    the plugin: only what the firmware printed, for probing arena sizes)."""
    fw = work / f"fw_{build.config}_{name}"
    fw.mkdir(exist_ok=True)
    glue = fw / "bench_model.h"
    write_glue(out, name, q_in, expected, glue)
    elf = link_firmware(build, out, name, glue, fw)
    sec = section_sizes(elf)
    parts = flash_breakdown(fw / "firmware.map")
    run = run_qemu(elf, plugin, fw)
    if plugin is None:
        return run
    return {
        "config": build.config, "model": name,
        "flash": sum(sec.get(s, 0) for s in FLASH_SECTIONS) - parts["test_io"],  # without the test vectors
        "flash_tflm": parts["tflm"], "flash_libc": parts["libc"], "flash_model": parts["model"],
        "flash_app": parts["app"], "tflite_bytes": (out / f"{name}.tflite").stat().st_size,
        "data": sec.get(".data", 0), "bss": sec.get(".bss", 0),
        "arena_declared": int(re.search(r"_TENSOR_ARENA_SIZE (\d+)", (out / f"{name}_model_data.h").read_text()).group(1)),
        "arena_used_m4": run.get("arena_used"), "stack_used": run.get("stack_used"),
        "ram": sec.get(".data", 0) + sec.get(".bss", 0) + (run.get("stack_used") or 0),
        "insn_invoke": run["insn_invoke"], "insn_first_invoke": run["insn_first"],
        "bit_exact_vs_wheel": run.get("mismatches") == 0 and run["exit"] == 0, "output_elements": run.get("output_elements"),
    }


def measure(build: TflmBuild, name: str, work: Path, plugin: Path) -> dict:
    """A qcc-compiled model (`kws`) or, for `kws_official`, the official int8 file with the smallest
    arena TFLM accepts on the target (one run with 256 KiB finds the bytes used, a second run uses them)."""
    if name.endswith("_official"):
        base = name[: -len("_official")]
        out, sample, nhwc = write_official(base, work, 256 * 1024)
        q_in, expected = reference_io(out / f"{name}.tflite", sample, nhwc)
        # AllocateTensors needs a little more than arena_used_bytes() reports: bisect in 16-byte steps
        lo = firmware(build, out, name, q_in, expected, work, None)["arena_used"] - 16
        hi = lo + 4096
        write_official(base, work, hi)
        if not firmware(build, out, name, q_in, expected, work, None)["ran"]:
            hi = 256 * 1024
        while hi - lo > 16:
            mid = (lo + hi) // 32 * 16
            write_official(base, work, mid)
            lo, hi = (lo, mid) if firmware(build, out, name, q_in, expected, work, None)["ran"] else (mid, hi)
        write_official(base, work, hi)
        return {**firmware(build, out, name, q_in, expected, work, plugin), "wheel_vs_reference_bit_exact": None}
    out, sample, nhwc = compile_model(name, work)
    q_in, expected = reference_io(out / f"{name}.tflite", sample, nhwc)
    return {**firmware(build, out, name, q_in, expected, work, plugin), "wheel_vs_reference_bit_exact": qcc_verify(out, sample)}


def _exact(row: dict) -> str:
    """Firmware output == TFLM wheel output (and, for qcc models, wheel == qcc's integer reference)."""
    if not row["bit_exact_vs_wheel"] or row["wheel_vs_reference_bit_exact"] is False:
        return "NO"
    return "yes" if row["wheel_vs_reference_bit_exact"] else "yes (vs wheel)"


def run(models: list[str], configs: list[str], tflm: Path, keep: Path | None = None) -> dict:
    """Measures every model under every build: {"rows": [...], "archives": {config: bytes}}."""
    rows, libs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        work = keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        plugin = work / "qemu_insn_count.so"
        _run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(plugin), str(PLUGIN_SRC)])
        for config in configs:
            build = TflmBuild(tflm, config)
            build.build()
            libs[config] = build.code_bytes()
            for name in models:
                rows.append(measure(build, name, work, plugin))
                print(f"tflm_firmware: {config} {name}: {rows[-1]}", file=sys.stderr)
    return {"rows": rows, "archives": libs}


HOW = """\
- Firmware: `bench/tflm_firmware_main.cc` (AllocateTensors, two Invokes on one real input sample,
  output check) + the model's qcc files + `examples/mps2/startup.c`, linked with
  `examples/mps2/mps2.ld`, `-Os`, `-mcpu=cortex-m4 -mfloat-abi=soft` (TFLM's `TARGET_ARCH=cortex-m4`),
  newlib-nano, `--gc-sections`. `*_official` rows: the official MLPerf Tiny int8 `.tflite` with a
  resolver of its ops and the smallest arena AllocateTensors accepts on this target (bisected).
- flash = text + rodata + data of the ELF without the test input/expected arrays; split with
  the linker map: *TFLM lib* = everything linked from libtensorflow-microlite.a; *libc/libgcc* =
  newlib-nano, libm, libgcc (soft-float double maths used when Prepare computes multipliers,
  `exp`/`round`/`frexp`, 64-bit division, `memcpy`); *model* = the flatbuffer array; *main+startup*
  = the rest (includes TFLM's inline templates such as the op resolver and `MicroInterpreter` setup).
- RAM = .data + .bss (the static arena of the declared size + TFLM objects) + stack peak (the firmware
  paints the stack and finds the lowest overwritten word after the two Invokes).
  *arena used (M4)* = `arena_used_bytes()` on this 32-bit target; qcc's declared size was
  measured on the 64-bit host (larger runtime structs).
- instructions / invoke: guest instructions between two marker calls around the second Invoke,
  counted by the TCG plugin `bench/qemu_insn_count.c` (Debian's qemu-system-arm 7.2 supports
  `-plugin` but ships no plugins, not even `libinsn.so`; `-icount` only scales the virtual clock).
  Exact, and deterministic run to run; QEMU does not model M4 cycle timing, so this is not cycles.
- bit-exact: the firmware's int8 output equals the TFLM Python wheel's on the same input (the
  wheel may be built from another TFLM commit than TFLM_SRC); for qcc models `qcc verify` on that
  sample also shows wheel == qcc's integer reference."""


def render(result: dict, header: str) -> str:
    rows, libs = result["rows"], result["archives"]
    configs = list(dict.fromkeys(r["config"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    by = {(r["config"], r["model"]): r for r in rows}
    full = table(["TFLM build", "model", "flash", "TFLM lib", "libc/libgcc", "model", "main+startup",
                  "flash - model", "arena (declared)", "arena used (M4)", ".bss", ".data", "stack peak", "RAM",
                  "instructions / invoke", "bit-exact"],
                 [[r["config"], r["model"], *(f"{r[k]:,}" for k in ("flash", "flash_tflm", "flash_libc", "flash_model",
                                                                  "flash_app")),
                   f"{r['flash'] - r['flash_model']:,}",
                   *(f"{r[k]:,}" for k in ("arena_declared", "arena_used_m4", "bss", "data", "stack_used", "ram",
                                           "insn_invoke")), _exact(r)]
                  for c in configs for m in models if (r := by.get((c, m)))])
    speed = table(["model"] + [f"{c}" for c in configs],
                  [[m] + [f"{by[(c, m)]['insn_invoke']:,}" if (c, m) in by else None for c in configs] for m in models])
    return (f"{header}\n\n## How\n\n{HOW}\n\n## Instructions per invoke (Cortex-M4)\n\n{speed}\n\n"
            f"## Flash and RAM (bytes)\n\n{full}\n\nBuilds: "
            + "; ".join(f"`{c}` = {CONFIG_NOTES[c]}" for c in configs)
            + "\n\nTFLM library archive alone (text + data of all its objects, before --gc-sections): "
            + ", ".join(f"{c} {libs[c]:,}" for c in configs) + "\n")


def main(argv: list[str]) -> int:
    tflm = Path(os.environ["TFLM_SRC"]).resolve() if os.environ.get("TFLM_SRC") else None
    why = missing_requirements(tflm)
    if why:
        print("tflm_firmware: skipped: " + "; ".join(why), file=sys.stderr)
        return 0
    pick = lambda flag, default: argv[argv.index(flag) + 1].split(",") if flag in argv else default
    models = pick("--models", MODEL_NAMES if SHARED.is_dir() else ["digits_cnn"])
    configs = pick("--configs", list(CONFIGS))
    keep = Path(argv[argv.index("--keep") + 1]).resolve() if "--keep" in argv else None
    result = run(models, configs, tflm, keep)
    commit = subprocess.run(["git", "-C", str(tflm), "log", "-1", "--format=%H (%cs)"],
                            capture_output=True, text=True).stdout.strip() or "(not a git checkout)"
    header = (f"# TFLite Micro firmware on Cortex-M4 (QEMU {MACHINE})\n\nMachine: {machine()}; "
              f"{_run(['arm-none-eabi-gcc', '--version']).stdout.splitlines()[0]}; "
              f"{_run(['qemu-system-arm', '--version']).stdout.splitlines()[0]}; TFLM source {commit}, "
              f"third-party sources as pinned in examples/README.md\n\n"
              f"Command: `TFLM_SRC=... python -m bench.tflm_firmware {' '.join(argv)}`")
    doc = render(result, header)
    print(doc)
    if "--out" in argv:
        out = Path(argv[argv.index("--out") + 1])
        out.write_text(doc)
        out.with_suffix(".json").write_text(json.dumps({"header": header, **result}, indent=1) + "\n")
    return 0 if all(_exact(r) != "NO" for r in result["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
