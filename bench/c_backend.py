"""`--target c` deployment numbers against the TFLM bundle, per sample and MLPerf Tiny model.

- RAM: the C scratch buffer (qcc's static plan) and the caller's input / output arrays, against
  the live-set bound of the schedule (the peak of simultaneously live int8 activations, computed
  here from the quantized graph in node order: reshapes share their input's bytes, every op's
  inputs and outputs are live at its step) with and without the graph I/O, and against the
  TFLM arena of `--target tflm` (which holds the I/O tensors and TFLM's runtime structs);
- flash: text + data of a minimal Cortex-M4 firmware (the model, the kernels it calls, a main that
  invokes it; arm-none-eabi-gcc -O2 -mthumb --gc-sections, no stdio), the const data alone, and
  the .tflite size (TFLM needs its runtime beside it);
- stack: the deepest call chain below <name>_invoke (-fcallgraph-info=su, Cortex-M4);
- instructions per invoke on the host (callgrind, gcc -O2, one all-zero-point input) against
  TFLM's reference kernels (the tflite-micro wheel, bench/instructions.py), and on emulated
  Cortex-M4 and M55 (SMLAD path) and Cortex-M3 (plain C): QEMU mps2-an386 / mps3-an547 / mps2-an385,
  counted exactly by the TCG plugin bench/qemu_insn_count.c between two marker calls (the counter
  bench/tflm_firmware.py uses for TFLM), and a table against that bench's TFLM firmwares;
- bit-exactness: `qcc verify` over the whole evaluation set.

`--int16` measures the same models with `--activations int16` (TFLite's 16x8 scheme, the *_s16
kernels) into bench/c_backend_int16.json and the "int16 activations" section of c_backend.md:
bit-exactness over the evaluation set, scratch, flash, stack, Cortex-M4 / M3 instructions and
SQNR beside the int8 row of c_backend.json and the TFLM arena of the same int16 model.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from bench.common import models, table
from bench.instructions import tflm_invoke_instructions
from bench.tflm_firmware import PLUGIN_SRC, symbol_address

VIEW_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"}
ARM = ["arm-none-eabi-gcc", "-std=c99", "-O2", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=soft"]


def live_bounds(graph) -> tuple[int, int]:
    """(peak live activation bytes without the graph I/O, with it)."""
    root = {}
    for n in graph.nodes:
        if n.op in VIEW_OPS and not n.inputs[0].is_constant:
            root[n.outputs[0].name] = root.get(n.inputs[0].name, n.inputs[0].name)
    index = {id(n): k for k, n in enumerate(graph.nodes, start=1)}
    io = {root.get(v.name, v.name) for v in list(graph.inputs) + list(graph.outputs)}
    spans: dict[str, list] = {}
    for v in graph.values():
        if v.is_constant or v.shape is None:
            continue
        r = root.get(v.name, v.name)
        first = index[id(v.producer)] if v.producer is not None else 0
        uses = [index[id(c)] for c in v.consumers if id(c) in index]
        last = len(graph.nodes) + 1 if v in graph.outputs else max(uses + [first])
        size = int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize
        s = spans.setdefault(r, [first, last, size])
        s[0], s[1], s[2] = min(s[0], first), max(s[1], last), max(s[2], size)
    steps = range(len(graph.nodes) + 2)
    peak = lambda keep: max(sum(sz for r, (f, l, sz) in spans.items() if f <= t <= l and keep(r))  # noqa: E731
                            for t in steps)
    return peak(lambda r: r not in io), peak(lambda r: True)


FIRMWARE_MAIN = """#include "{ident}.h"
{arrays}
static int32_t scratch[{scratch} / 4 + 1];
int main(void) {{ return {ident}_invoke({args}scratch); }}
void Reset_Handler(void) {{ main(); for (;;) {{}} }}
extern void __stack_top(void);
__attribute__((section(".isr_vector"), used)) static void (*const vectors[2])(void) = {{__stack_top, Reset_Handler}};
"""


def io_arrays(report: dict) -> tuple[str, str]:
    """(declarations of one static array per graph input / output in its element type, the
    invoke's arguments before the scratch pointer)."""
    decls, args = [], []
    for kind in ("inputs", "outputs"):
        for i, d in enumerate(report[kind]):
            name = f"{kind[:-1]}{i}"
            decls.append(f"static {d['dtype']}_t {name}[{int(np.prod(d['shape']))}];")
            args.append(f"{name}, ")
    return " ".join(decls), "".join(args)


def arm_sizes(outdir: Path, ident: str, report: dict, work: Path) -> dict | None:
    """Flash of a minimal Cortex-M4 firmware (model + kernels + a main calling invoke once + a
    2-entry vector table; no stdio) and the invoke's deepest stack (-fcallgraph-info=su)."""
    if not shutil.which(ARM[0]):
        return None
    arrays, args = io_arrays(report)
    (work / "fw_main.c").write_text(FIRMWARE_MAIN.format(ident=ident, arrays=arrays,
                                                         scratch=report["c"]["scratch_bytes"], args=args))
    for src in (f"{ident}.c", "qcc_kernels.c"):
        subprocess.run([*ARM, "-fcallgraph-info=su", "-c", str(outdir / src), "-o", str(work / f"{Path(src).stem}.o")],
                       check=True, capture_output=True, cwd=work)
    elf = work / "fw.elf"
    subprocess.run([*ARM, "-ffunction-sections", "-fdata-sections", "-nostartfiles", "--specs=nano.specs",
                    "--specs=nosys.specs", "-Wl,--gc-sections", "-T", str(outdir / "mps2.ld"), "-I", str(outdir),
                    "-o", str(elf), str(work / "fw_main.c"), str(outdir / f"{ident}.c"), str(outdir / "qcc_kernels.c")],
                   check=True, capture_output=True, cwd=work)
    out = subprocess.run(["arm-none-eabi-size", str(elf)], check=True, capture_output=True, text=True).stdout
    text, data, bss = (int(v) for v in out.splitlines()[1].split()[:3])
    return {"flash": text + data, "bss": bss, "stack": _stack(work, f"{ident}_invoke")}


COUNTER_MAIN = """#include <stdint.h>
#include "{ident}.h"
/* One invoke between two calls of bench_mark(), whose address the instruction-counting QEMU
 * plugin (bench/qemu_insn_count.c) watches; then semihosting SYS_EXIT. */
extern uint32_t __data_load[], __data_start[], __data_end[], __bss_start[], __bss_end[];
{arrays}
static int32_t scratch[{scratch} / 4 + 1];
__attribute__((noinline, used)) void bench_mark(void) {{ __asm__ volatile("" ::: "memory"); }}
static void semihosting_exit(void) {{
  register int r0 __asm__("r0") = 0x18;               /* SYS_EXIT */
  register void *r1 __asm__("r1") = (void *)0x20026;  /* ADP_Stopped_ApplicationExit */
  __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
}}
void Reset_Handler(void) {{
  uint32_t *src = __data_load;
  volatile uint32_t *dst;  /* volatile: no memcpy / memset calls (no libc here) */
  for (dst = __data_start; dst < __data_end;) *dst++ = *src++;
  for (dst = __bss_start; dst < __bss_end;) *dst++ = 0;
  bench_mark();
  {ident}_invoke({args}scratch);
  bench_mark();
  semihosting_exit();
  for (;;) {{}}
}}
extern void __stack_top(void);
__attribute__((section(".isr_vector"), used)) static void (*const vectors[2])(void) = {{__stack_top, Reset_Handler}};
"""

# QEMU board and mps2.ld memory map per core, as the emitted Makefile has them
BOARDS = {"cortex-m3": ("mps2-an385", []), "cortex-m4": ("mps2-an386", []),
          "cortex-m33": ("mps2-an505", ["-Wl,--defsym=__code_base=0x10000000,--defsym=__ram_base=0x38000000"]),
          "cortex-m55": ("mps3-an547", ["-Wl,--defsym=__code_size=512K,--defsym=__ram_base=0x21000000"])}


def insn_plugin(work: Path) -> Path | None:
    """bench/qemu_insn_count.c built for the host (None without gcc)."""
    if not shutil.which("gcc"):
        return None
    plugin = work / "qemu_insn_count.so"
    if not plugin.is_file():
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(plugin), str(PLUGIN_SRC)], check=True,
                       capture_output=True)
    return plugin


def qemu_instructions(outdir: Path, ident: str, report: dict, work: Path, cpu: str = "cortex-m4") -> int | None:
    """Instructions of one invoke on an emulated Cortex-M: QEMU with the counting plugin, between
    the two bench_mark() calls (exact and deterministic; the count TFLM's firmware bench takes)."""
    plugin = insn_plugin(work.parent)
    if not (shutil.which(ARM[0]) and shutil.which("qemu-system-arm") and plugin):
        return None
    machine, memory = BOARDS[cpu]
    arrays, args = io_arrays(report)
    (work / "count_main.c").write_text(COUNTER_MAIN.format(ident=ident, arrays=arrays,
                                                           scratch=report["c"]["scratch_bytes"], args=args))
    elf = work / f"count_{cpu}.elf"
    flags = [f if not f.startswith("-mcpu") else f"-mcpu={cpu}" for f in ARM]
    subprocess.run([*flags, "-nostartfiles", "-nostdlib", "-Wl,--gc-sections", "-T", str(outdir / "mps2.ld"), *memory,
                    "-I", str(outdir), "-o", str(elf), str(work / "count_main.c"), str(outdir / f"{ident}.c"),
                    str(outdir / "qcc_kernels.c"), "-lgcc"], check=True, capture_output=True)
    log = work / f"count_{cpu}.log"
    subprocess.run(["qemu-system-arm", "-M", machine, "-nographic", "-monitor", "none", "-serial", "none",
                    "-semihosting-config", "enable=on,target=native", "-kernel", str(elf),
                    "-plugin", f"{plugin},mark={symbol_address(elf, 'bench_mark'):#x}", "-d", "plugin", "-D", str(log)],
                   check=True, capture_output=True, text=True, timeout=1800, stdin=subprocess.DEVNULL)
    marks = [int(v) for v in re.findall(r"^mark (\d+)", log.read_text(), re.M)]
    return marks[1] - marks[0]


def _stack(work: Path, entry: str) -> int:
    """Deepest chain of static frame sizes from `entry` in the .ci call graphs gcc wrote."""
    frames, edges = {}, {}
    for ci in work.glob("*.ci"):
        text = ci.read_text()
        for title, size in re.findall(r'node: \{ title: "([^"]+)" label: "[^"]*\\n(\d+) bytes', text):
            frames[title] = int(size)
        for a, b in re.findall(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"', text):
            edges.setdefault(a, set()).add(b)

    def depth(f, seen=()):
        return frames.get(f, 0) + max((depth(g, seen + (f,)) for g in edges.get(f, ()) if g not in seen), default=0)
    return depth(entry)


def host_instructions(outdir: Path, ident: str, work: Path) -> int | None:
    if not shutil.which("valgrind"):
        return None
    exe = work / "main"
    subprocess.run(["cc", "-std=c99", "-O2", "-o", str(exe), str(outdir / "main.c"), str(outdir / f"{ident}.c"),
                    str(outdir / "qcc_kernels.c")], check=True, capture_output=True)
    out = work / "callgrind.out"
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", f"--toggle-collect={ident}_invoke",
                    str(exe)], check=True, capture_output=True)
    return int(re.search(r"^totals:\s+(\d+)", out.read_text(), re.M).group(1))


def measure(name, onnx_path, calib, evalset, workdir: Path) -> dict:
    from qcompiler.driver.pipeline import CompileOptions, compile_model
    from qcompiler.driver.verify import verify_outdir
    from qcompiler.ir.serialize import load_graph
    np.save(workdir / "calib.npy", calib)
    out_c, out_t = workdir / f"{name}_c", workdir / f"{name}_tflm"
    compile_model(onnx_path, out_c, CompileOptions(target="c", calib=str(workdir / "calib.npy")))
    compile_model(onnx_path, out_t, CompileOptions(target="tflm", calib=str(workdir / "calib.npy")))
    out_s = workdir / f"{name}_c_io_scratch"
    compile_model(onnx_path, out_s, CompileOptions(target="c", calib=str(workdir / "calib.npy"),
                                                   target_options={"c_io": "scratch"}))
    io_scratch = json.loads((out_s / "report.json").read_text())["c"]["scratch_bytes"]
    io_scratch_exact = bool(verify_outdir(out_s, evalset, limit=50)["c"]["bit_exact"])
    rep = json.loads((out_c / "report.json").read_text())
    tflm = json.loads((out_t / "report.json").read_text())
    c = rep["c"]
    bound, bound_io = live_bounds(load_graph(out_c / rep["ir_file"]))
    res = verify_outdir(out_c, evalset)
    work = workdir / f"{name}_build"
    work.mkdir()
    arm = arm_sizes(out_c, c["ident"], rep, work) or {}
    tflite = next(out_t.glob("*.tflite"))
    return {"model": name, "scratch": c["scratch_bytes"], "io": c["io_bytes"], "io_in_scratch": io_scratch,
            "io_in_scratch_bit_exact": io_scratch_exact, "live_bound": bound,
            "live_bound_io": bound_io, "tflm_arena": tflm["arena"]["arena_bytes"], "const_data": c["flash_data_bytes"],
            "firmware_flash": arm.get("flash"), "stack": arm.get("stack"),
            "tflite_bytes": tflite.stat().st_size, "host_instructions": host_instructions(out_c, c["ident"], work),
            "m4_instructions": qemu_instructions(out_c, c["ident"], rep, work),
            "m3_instructions": qemu_instructions(out_c, c["ident"], rep, work, "cortex-m3"),
            "m55_instructions": qemu_instructions(out_c, c["ident"], rep, work, "cortex-m55"),
            "tflm_instructions": tflm_invoke_instructions(tflite), "samples": res["samples"],
            "bit_exact": bool(res["c"]["bit_exact"]), "max_abs_diff_lsb": res["c"]["max_abs_diff_lsb"],
            "sqnr_db": next(iter(res.get("fidelity", {}).get("c", {}).values()), {}).get("sqnr_db")}


def _n(x):
    return "—" if x is None else f"{x:,}"


def run(quick: bool = False):
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, onnx_path, calib, evalset, _labels, _official in models(quick):
            d = Path(tmp) / name
            d.mkdir()
            rows.append(measure(name, onnx_path, calib, evalset, d))
    md = table(["model", "scratch B", "live bound B (ratio)", "scratch + I/O B", "--c-io scratch B",
                "live bound with I/O B", "TFLM arena B", "firmware flash B (M4)", "const data B", ".tflite B",
                "stack B (M4)",
                "host instr. ours / TFLM", "Cortex-M4 / M3 / M55 instr. (QEMU)", "bit-exact (samples)", "SQNR dB"],
               [[r["model"], _n(r["scratch"]), f"{_n(r['live_bound'])} ({r['scratch'] / max(r['live_bound'], 1):.2f})",
                 _n(r["scratch"] + r["io"]),
                 _n(r["io_in_scratch"]) + ("" if r["io_in_scratch_bit_exact"] else " (NOT bit-exact)"),
                 _n(r["live_bound_io"]), _n(r["tflm_arena"]),
                 _n(r["firmware_flash"]), _n(r["const_data"]), _n(r["tflite_bytes"]),
                 _n(r["stack"]),
                 f"{_n(r['host_instructions'])} / {_n(r['tflm_instructions'])}"
                 + (f" = {r['host_instructions'] / r['tflm_instructions']:.2f}"
                    if r["host_instructions"] and r["tflm_instructions"] else ""),
                 f"{_n(r['m4_instructions'])} / {_n(r['m3_instructions'])} / {_n(r.get('m55_instructions'))}",
                 f"{'yes' if r['bit_exact'] else 'NO'} ({r['samples']})",
                 "—" if r["sqnr_db"] is None else f"{r['sqnr_db']:.2f}"] for r in rows])
    note = ("Scratch: `<NAME>_SCRATCH_BYTES`, the only RAM the model needs besides the caller's input / output "
            "arrays and the stack; live bound: the peak of simultaneously live activations in node order without "
            "in-place execution (so a plan that runs ops in place can go below it). `--c-io scratch`: the inputs "
            "and outputs placed in the scratch buffer too (the whole RAM of the model besides the stack; checked "
            "bit-exact on 50 samples), against the bound with I/O. TFLM arena: measured minimum "
            "of the same model compiled with `--target tflm` (it also holds the I/O tensors and TFLM's runtime "
            "structs). Firmware flash: text + data of a Cortex-M4 ELF (arm-none-eabi-gcc -O2 -mthumb, "
            "--gc-sections) holding the model, the kernels it calls and a main that invokes it once (no stdio); "
            "stack: the deepest chain of static frames below `<name>_invoke`. Host instructions: callgrind "
            "inside `<name>_invoke` (gcc -O2) vs "
            "inside TFLM's `MicroInterpreter::Invoke` (the tflite-micro wheel's reference kernels), one invoke "
            "on an all-zero-point input. Cortex-M: arm-none-eabi-gcc -O2 -mfloat-abi=soft, one invoke (all-zero "
            "int8 inputs) on QEMU (mps2-an386 / mps2-an385 / mps3-an547) counted exactly by the TCG plugin "
            "bench/qemu_insn_count.c, as bench/tflm_firmware.md counts TFLM; M4 and M55 run the kernels' SMLAD "
            "path, M3 plain C.")
    return md + "\n\n" + note + "\n\n" + against_tflm_firmware(rows) + "\n\n" + int16_section(rows), rows


def run16(quick: bool = False) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, onnx_path, calib, evalset, _labels, _official in models(quick):
            d = Path(tmp) / name
            d.mkdir()
            rows.append(measure16(name, onnx_path, calib, evalset, d))
    return rows


def measure16(name, onnx_path, calib, evalset, workdir: Path) -> dict:
    """One model with --activations int16 for C (and, for its arena, for TFLM)."""
    from qcompiler.driver.pipeline import CompileOptions, compile_model
    from qcompiler.driver.verify import verify_outdir
    from qcompiler.ir.serialize import load_graph
    np.save(workdir / "calib.npy", calib)
    out_c, out_t = workdir / f"{name}_c16", workdir / f"{name}_tflm16"
    compile_model(onnx_path, out_c, CompileOptions(target="c", calib=str(workdir / "calib.npy"), activations="int16"))
    compile_model(onnx_path, out_t, CompileOptions(target="tflm", calib=str(workdir / "calib.npy"),
                                                   activations="int16"))
    rep, tflm = (json.loads((o / "report.json").read_text()) for o in (out_c, out_t))
    c = rep["c"]
    bound, _ = live_bounds(load_graph(out_c / rep["ir_file"]))
    res = verify_outdir(out_c, evalset)
    work = workdir / f"{name}_build16"
    work.mkdir()
    arm = arm_sizes(out_c, c["ident"], rep, work) or {}
    return {"model": name, "scratch": c["scratch_bytes"], "io": c["io_bytes"], "live_bound": bound,
            "tflm_arena": tflm["arena"]["arena_bytes"], "const_data": c["flash_data_bytes"],
            "firmware_flash": arm.get("flash"), "stack": arm.get("stack"),
            "m4_instructions": qemu_instructions(out_c, c["ident"], rep, work),
            "m3_instructions": qemu_instructions(out_c, c["ident"], rep, work, "cortex-m3"),
            "samples": res["samples"], "bit_exact": bool(res["c"]["bit_exact"]),
            "max_abs_diff_lsb": res["c"]["max_abs_diff_lsb"], "kernels": rep["ops"],
            "sqnr_db": next(iter(res.get("fidelity", {}).get("c", {}).values()), {}).get("sqnr_db")}


INT16_JSON = Path(__file__).resolve().parent / "c_backend_int16.json"
INT16_TITLE = "### int16 activations (`--activations int16`, TFLite's 16x8 scheme)"


def int16_section(rows8: list[dict] | None = None) -> str:
    """The int16 rows of c_backend_int16.json beside the int8 rows (c_backend.json)."""
    if not INT16_JSON.is_file():
        return ""
    rows = json.loads(INT16_JSON.read_text())
    if rows8 is None:
        path = INT16_JSON.with_name("c_backend.json")
        rows8 = json.loads(path.read_text()) if path.is_file() else []
    by8 = {r["model"]: r for r in rows8}
    out = []
    for r in rows:
        e = by8.get(r["model"], {})
        pair = lambda key: f"{_n(r[key])} / {_n(e.get(key))}"  # noqa: E731
        out.append([r["model"], f"{'yes' if r['bit_exact'] else 'NO'} ({r['samples']})", pair("scratch"),
                    _n(r["tflm_arena"]), pair("firmware_flash"), pair("const_data"), _n(r["stack"]),
                    pair("m4_instructions"), pair("m3_instructions"),
                    "—" if r["sqnr_db"] is None else f"{r['sqnr_db']:.2f} / "
                    + ("—" if e.get("sqnr_db") is None else f"{e['sqnr_db']:.2f}")])
    ratios = [r["m4_instructions"] / by8[r["model"]]["m4_instructions"] for r in rows
              if r.get("m4_instructions") and by8.get(r["model"], {}).get("m4_instructions")]
    ratio = f"; Cortex-M4 instructions {min(ratios):.2f}-{max(ratios):.2f}x the int8 ones" if ratios else ""
    md = table(["model", "bit-exact (samples)", "scratch B: int16 / int8", "TFLM int16 arena B",
                "firmware flash B (M4): int16 / int8", "const data B: int16 / int8", "stack B (M4)",
                "Cortex-M4 instr.: int16 / int8", "Cortex-M3 instr.: int16 / int8", "SQNR dB: int16 / int8"], out)
    return (f"{INT16_TITLE}\n\n`python -m bench.c_backend --int16` (c_backend_int16.json). Each model compiled "
            "with `--target c --activations int16`: every activation int16 with zero point 0, int8 weights, int64 "
            "biases and accumulators (`qcc_conv2d_s16` for convolutions, depthwise and fully connected layers; "
            "`*_s16` pooling, elementwise, softmax kernels); bit-exact: `qcc verify` against the integer reference "
            "over the whole evaluation set. Scratch, flash, stack and instructions measured as in the int8 table "
            "above (int8 column: c_backend.json); TFLM int16 arena: the same int16 model compiled for `--target "
            "tflm` (its measured arena, I/O and TFLM's structs included). Scratch doubles with 2-byte "
            "activations; flash stays within a few percent (int64 biases where the int8 kernels keep a bias and a "
            "folded bias in int32)" + ratio + ".\n\n" + md)


FIRMWARE_JSON = Path(__file__).resolve().parent / "tflm_firmware.json"


def against_tflm_firmware(rows: list[dict]) -> str:
    """The same models as TFLM firmwares on Cortex-M4 (bench/tflm_firmware.json, built from TFLM's
    sources with reference kernels and with CMSIS-NN): RAM, flash and instructions per invoke."""
    if not FIRMWARE_JSON.is_file():
        return "(No TFLM firmware numbers: run bench/tflm_firmware.py for the comparison with a TFLM firmware.)"
    fw = {(r["config"], r["model"]): r for r in json.loads(FIRMWARE_JSON.read_text())["rows"]}
    out = []
    for r in rows:
        ref, ref_os, cmsis = (fw.get((cfg, r["model"])) for cfg in ("ref", "ref-Os", "cmsis_nn"))
        official = fw.get(("ref", f"{r['model']}_official"))
        if ref is None or r["stack"] is None:
            continue
        ours_ram = r["scratch"] + r["io"] + r["stack"]
        m4 = r["m4_instructions"]
        also = (lambda key: f" / {_n(official[key])}" if official else "")  # noqa: E731
        out.append([r["model"],
                    f"{_n(ours_ram)} / {_n(ref['ram'])}{also('ram')}", f"{ours_ram / ref['ram']:.2f}",
                    f"{_n(r['firmware_flash'])} / {_n(ref['flash'])}{also('flash')}",
                    f"{r['firmware_flash'] / ref['flash']:.2f}",
                    f"{_n(m4)} / {_n(ref['insn_invoke'])} / {_n(ref_os and ref_os['insn_invoke'])}",
                    f"{m4 / ref['insn_invoke']:.2f}" if m4 else "—",
                    _n(cmsis and cmsis["insn_invoke"])
                    + (f" ({m4 / cmsis['insn_invoke']:.2f}x)" if m4 and cmsis else "")])
    if not out:
        return ""
    md = table(["model", "RAM B: ours / TFLM / TFLM official .tflite", "ratio", "flash B: ours / TFLM / official",
                "ratio", "M4 instructions: ours / TFLM ref kernels / ref -Os", "ratio", "TFLM CMSIS-NN (ours vs it)"],
               out)
    return ("### Against a TFLM firmware on Cortex-M4 (bench/tflm_firmware.md)\n\n" + md + "\n\n"
            "Ours: RAM = scratch + the caller's I/O arrays + the invoke's stack; flash = the firmware above (-O2). "
            "TFLM (bench/tflm_firmware.md, BUILD_TYPE=release, TFLM's default levels: -Os core, -O2 reference "
            "kernels): RAM = .data + .bss (the arena of qcc's declared size and TFLM's objects) + the measured stack "
            "peak; flash = text + rodata + data of a firmware with the same model compiled by qcc for TFLM "
            "(`official`: the MLPerf Tiny int8 file with its bisected minimum arena); instructions = one Invoke "
            "counted by the same QEMU plugin. CMSIS-NN is TFLM with Arm's SIMD kernels (SMLAD and the like "
            "throughout, hand-scheduled inner loops): the distance to it is how far the plain-C kernels with "
            "their SMLAD dot products are from an optimized SIMD library on this core.")


if __name__ == "__main__":   # python -m bench.c_backend [--quick]: this section alone -> bench/c_backend.md
    import sys
    import time
    from bench.common import machine
    t0 = time.time()
    out = Path(__file__).resolve().parent / "c_backend.md"
    if "--int16" in sys.argv:   # the int16 section alone: its json, and that section of c_backend.md
        INT16_JSON.write_text(json.dumps(run16("--quick" in sys.argv), indent=1, default=float) + "\n")
        text = out.read_text() if out.is_file() else "# C backend (--target c) deployment\n"
        head = text.split(INT16_TITLE)[0].rstrip("\n")
        out.write_text(f"{head}\n\n{int16_section()}\n\n(int16 section: {time.strftime('%Y-%m-%d')}, "
                       f"{time.time() - t0:.0f} s)\n")
        print(f"bench: wrote the int16 section of {out}", file=sys.stderr)
        sys.exit(0)
    md, rows = run("--quick" in sys.argv)
    out.write_text(f"# C backend (--target c) deployment\n\nMachine: {machine()}\n\nCommand: `python -m bench.c_backend"
                   f"{' --quick' if '--quick' in sys.argv else ''}` ({time.strftime('%Y-%m-%d')}, "
                   f"{time.time() - t0:.0f} s)\n\n{md}\n")
    (out.with_suffix(".json")).write_text(json.dumps(rows, indent=1, default=float) + "\n")
    print(f"bench: wrote {out}", file=sys.stderr)
