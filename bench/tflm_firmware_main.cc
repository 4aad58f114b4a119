// Firmware for bench/tflm_firmware.py: one qcc-compiled model under TFLite Micro on an
// MPS2 board in QEMU (startup and linker script: examples/mps2/).
//
// bench_model.h (written by the script) includes the model's qcc headers and defines
// BENCH_ARENA_SIZE, BenchOpResolver, BENCH_REGISTER_OPS, BENCH_MODEL_DATA, and one input
// sample with the output qcc's integer reference computes for it.
//
// Prints (semihosting): arena bytes TFLM used, stack high-water mark, output mismatches
// against the reference. bench_mark() brackets each Invoke (four marks) for the instruction-count
// plugin (bench/qemu_insn_count.c).
#include <cstdint>
#include <cstring>

#include "bench_model.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

extern "C" void semihost_puts(const char* s);
extern "C" uint32_t __stack_limit[];

extern "C" __attribute__((noinline)) void bench_mark(void) { __asm__ volatile("" ::: "memory"); }

namespace {

constexpr uint32_t kPaint = 0xA5A5A5A5u;
alignas(16) uint8_t tensor_arena[BENCH_ARENA_SIZE];

void PutValue(const char* label, long value) {
  char buf[48];
  char digits[12];
  int n = 0;
  unsigned long v = value < 0 ? 0ul - static_cast<unsigned long>(value) : static_cast<unsigned long>(value);
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  size_t len = strlen(label);
  memcpy(buf, label, len);
  buf[len++] = ' ';
  if (value < 0) buf[len++] = '-';
  while (n > 0) buf[len++] = digits[--n];
  buf[len++] = '\n';
  buf[len] = '\0';
  semihost_puts(buf);
}

// Fills the unused stack below the current frame with a pattern; StackUsed() finds the
// lowest word that changed.
__attribute__((noinline)) void PaintStack() {
  uint32_t here;
  for (volatile uint32_t* p = __stack_limit; p < &here - 64; ++p) *p = kPaint;
}

long StackUsed(const uint32_t* top) {
  const uint32_t* p = __stack_limit;
  while (p < top && *p == kPaint) ++p;
  return reinterpret_cast<const char*>(top) - reinterpret_cast<const char*>(p);
}

}  // namespace

extern "C" uint32_t __stack_top[];

int main() {
  PaintStack();
  const tflite::Model* model = tflite::GetModel(BENCH_MODEL_DATA);
  static BenchOpResolver resolver;
  if (BENCH_REGISTER_OPS(resolver) != kTfLiteOk) return 2;
  static tflite::MicroInterpreter interpreter(model, resolver, tensor_arena, BENCH_ARENA_SIZE);
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    semihost_puts("AllocateTensors failed\n");
    return 3;
  }
  TfLiteTensor* input = interpreter.input(0);
  if (input->bytes != sizeof(bench_input)) return 4;
  // The input is copied before each Invoke: TFLM's planner may reuse the input tensor's
  // arena bytes for later intermediates, so an invoke overwrites its own input.
  memcpy(input->data.int8, bench_input, sizeof(bench_input));
  bench_mark();
  TfLiteStatus first = interpreter.Invoke();
  bench_mark();
  memcpy(input->data.int8, bench_input, sizeof(bench_input));
  bench_mark();
  TfLiteStatus second = interpreter.Invoke();  // the steady state
  bench_mark();
  if (first != kTfLiteOk || second != kTfLiteOk) {
    semihost_puts("Invoke failed\n");
    return 5;
  }

  const TfLiteTensor* output = interpreter.output(0);
  long mismatches = 0;
  if (output->bytes != sizeof(bench_expected)) return 6;
  for (size_t i = 0; i < sizeof(bench_expected); ++i) {
    if (output->data.int8[i] == bench_expected[i]) continue;
    if (mismatches++ < 8) {
      PutValue("mismatch_at", static_cast<long>(i));
      PutValue("  got", output->data.int8[i]);
      PutValue("  expected", bench_expected[i]);
    }
  }
  PutValue("arena_used", static_cast<long>(interpreter.arena_used_bytes()));
  PutValue("stack_used", StackUsed(__stack_top));
  PutValue("output_elements", static_cast<long>(sizeof(bench_expected)));
  PutValue("mismatches", mismatches);
  return mismatches == 0 ? 0 : 1;
}
