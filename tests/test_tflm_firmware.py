"""bench/tflm_firmware.py and the pieces it shares with examples/: the skip path, the linker-map
split, and (when arm-none-eabi-gcc, qemu-system-arm and gcc are installed) the MPS2 startup and
the instruction-count plugin on a loop of known length."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT))
from bench import tflm_firmware  # noqa: E402

MAP = """\
Discarded input sections

 .text.unused   0x00000000       0x40 /x/libtensorflow-microlite.a(a.o)

Linker script and memory map

.text           0x00000000      0x1a0
 *(.vectors)
 .vectors       0x00000000       0x40 startup.o
 .text._ZN6tflite16MicroInterpreter6InvokeEv
                0x00000040      0x100 /x/libtensorflow-microlite.a(micro_interpreter.o)
                0x00000040                tflite::MicroInterpreter::Invoke()
 .text.memcpy   0x00000140       0x20 /usr/lib/arm-none-eabi/lib/thumb/v7e-m/nofp/libc_nano.a(lib_a-memcpy.o)
 *fill*         0x00000160        0x2 
 .text.main     0x00000162       0x3e main.o
.rodata         0x000001a0      0x130
 .rodata.m_model_data
                0x000001a0      0x100 m_model_data.o
 .rodata.bench_io
                0x000002a0       0x30 tflm_firmware_main.o
.bss            0x20000000      0x200
 .bss.arena     0x20000000      0x200 tflm_firmware_main.o
"""


def test_flash_breakdown_splits_by_origin(tmp_path):
    path = tmp_path / "firmware.map"
    path.write_text(MAP)
    assert tflm_firmware.flash_breakdown(path) == {
        "tflm": 0x100, "libc": 0x20, "model": 0x100, "app": 0x40 + 0x2 + 0x3e, "test_io": 0x30}


def test_skips_with_the_reason(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("TFLM_SRC", raising=False)
    assert tflm_firmware.main([]) == 0
    assert "skipped: TFLM_SRC is not set" in capsys.readouterr().err
    monkeypatch.setenv("TFLM_SRC", str(tmp_path))
    assert tflm_firmware.main([]) == 0
    assert "has no tensorflow/lite/micro/tools/make/Makefile" in capsys.readouterr().err


LOOP = """
void semihost_puts(const char *s);
__attribute__((noinline)) void bench_mark(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline)) void spin(int n) { __asm__ volatile("1: subs %0, %0, #1\\n\\tbne 1b" : "+r"(n)); }
int main(void) {
  bench_mark();
  spin(1000);
  bench_mark();
  spin(3000);
  bench_mark();
  semihost_puts("done\\n");
  return 0;
}
"""


@pytest.mark.skipif(not all(shutil.which(t) for t in ("arm-none-eabi-gcc", "qemu-system-arm", "gcc")),
                    reason="needs arm-none-eabi-gcc, qemu-system-arm and gcc")
@pytest.mark.parametrize("cpu,machine", [("cortex-m4", "mps2-an386"), ("cortex-m3", "mps2-an385")])
def test_mps2_startup_and_instruction_count(tmp_path, cpu, machine):
    (tmp_path / "loop.c").write_text(LOOP)
    elf, plugin = tmp_path / "loop.elf", tmp_path / "insn.so"
    subprocess.run(["arm-none-eabi-gcc", f"-mcpu={cpu}", "-mthumb", "-Os", "-Wall", "-Wextra", "-Werror",
                    "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
                    "-T", str(ROOT / "examples/mps2/mps2.ld"), str(ROOT / "examples/mps2/startup.c"),
                    str(tmp_path / "loop.c"), "-o", str(elf)], check=True)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(plugin),
                    str(ROOT / "bench/qemu_insn_count.c")], check=True)
    run = tflm_firmware.run_qemu(elf, None, tmp_path)
    assert run["exit"] == 0
    log = tmp_path / "plugin.log"
    mark = tflm_firmware.symbol_address(elf, "bench_mark")
    proc = subprocess.run(["qemu-system-arm", "-M", machine, "-nographic", "-semihosting", "-kernel", str(elf),
                           "-plugin", f"{plugin},mark={mark:#x}", "-d", "plugin", "-D", str(log)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "done" in proc.stdout + proc.stderr
    marks = [int(m) for m in re.findall(r"^mark (\d+)", log.read_text(), re.M)]
    # spin(n) runs 2n instructions (subs, bne) plus the same call overhead each time
    assert len(marks) == 3 and (marks[2] - marks[1]) - (marks[1] - marks[0]) == 4000
