// Runs a qcc-compiled model under TensorFlow Lite Micro: one inference on one input.
//
// Build (see README.md): compile this file and <name>_model_data.c from the qcc
// output directory, link against TFLM's libtensorflow-microlite.a.
//
// Everything qcc generates is prefixed with the model name (--name, default:
// the ONNX file stem). This example uses the sample model `digits_cnn`; for
// another model change the two #includes and the block marked MODEL below.
//
// The same code serves every I/O mode of qcc: it looks at the input/output
// tensor types at run time (int8 by default, float32 with --io float, uint8
// input with --input-dtype uint8) and uses the scale/zero-point macros and the
// generic quantize/dequantize helpers of the generated header.

#include <cstddef>
#include <cstdint>

#include "digits_cnn_model_data.h"
#include "digits_cnn_op_resolver.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {

// ---- MODEL: the only model-specific lines ------------------------------------------
using OpResolver = DigitsCnnOpResolver;
constexpr const unsigned char* kModelData = digits_cnn_model_data;
constexpr int kArenaSize = DIGITS_CNN_TENSOR_ARENA_SIZE;
constexpr int kInputCount = DIGITS_CNN_INPUT0_ELEMENT_COUNT;
constexpr int kOutputCount = DIGITS_CNN_OUTPUT0_ELEMENT_COUNT;
constexpr float kInputScale = DIGITS_CNN_INPUT0_SCALE;
constexpr int32_t kInputZeroPoint = DIGITS_CNN_INPUT0_ZERO_POINT;
constexpr float kOutputScale = DIGITS_CNN_OUTPUT0_SCALE;
constexpr int32_t kOutputZeroPoint = DIGITS_CNN_OUTPUT0_ZERO_POINT;

TfLiteStatus RegisterOps(OpResolver& resolver) { return digits_cnn_register_ops(resolver); }

int32_t Quantize(float x, int32_t qmin, int32_t qmax) {
  return digits_cnn_quantize(x, kInputScale, kInputZeroPoint, qmin, qmax);
}

float Dequantize(int32_t q) { return digits_cnn_dequantize(q, kOutputScale, kOutputZeroPoint); }
// ---- end of MODEL ----------------------------------------------------------------------

// TFLM keeps all tensors in this arena; 16-byte alignment suits every kernel.
alignas(16) uint8_t tensor_arena[kArenaSize];

// Stand-in for a sensor or camera: replace with real data, in the layout the
// model's input has (NHWC for images, see report.json "io_layout").
float ReadInput(int i) { return static_cast<float>(i % 17) / 16.0f; }

// Writes one input element in whatever type the model's input tensor has.
bool WriteInput(TfLiteTensor* input, int i, float x) {
  switch (input->type) {
    case kTfLiteInt8:
      input->data.int8[i] = static_cast<int8_t>(Quantize(x, -128, 127));
      return true;
    case kTfLiteUInt8:  // camera bytes could also be copied in unchanged
      input->data.uint8[i] = static_cast<uint8_t>(Quantize(x, 0, 255));
      return true;
    case kTfLiteFloat32:
      input->data.f[i] = x;
      return true;
    default:
      return false;
  }
}

// Reads one output element as a real number.
float ReadOutput(const TfLiteTensor* output, int i) {
  if (output->type == kTfLiteFloat32) return output->data.f[i];
  return Dequantize(output->data.int8[i]);
}

}  // namespace

int main() {
  const tflite::Model* model = tflite::GetModel(kModelData);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    MicroPrintf("model schema version %d is not %d", static_cast<int>(model->version()),
                TFLITE_SCHEMA_VERSION);
    return 1;
  }
  static OpResolver resolver;
  if (RegisterOps(resolver) != kTfLiteOk) {
    MicroPrintf("registering the model's kernels failed");
    return 1;
  }
  static tflite::MicroInterpreter interpreter(model, resolver, tensor_arena, kArenaSize);
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    MicroPrintf("AllocateTensors failed: raise the arena above %d bytes", kArenaSize);
    return 1;
  }

  TfLiteTensor* input = interpreter.input(0);
  for (int i = 0; i < kInputCount; ++i) {
    if (!WriteInput(input, i, ReadInput(i))) {
      MicroPrintf("unexpected input tensor type %d", static_cast<int>(input->type));
      return 1;
    }
  }
  if (interpreter.Invoke() != kTfLiteOk) {
    MicroPrintf("Invoke failed");
    return 1;
  }

  const TfLiteTensor* output = interpreter.output(0);
  int best = 0;
  float best_score = ReadOutput(output, 0);
  for (int i = 1; i < kOutputCount; ++i) {
    const float score = ReadOutput(output, i);
    if (score > best_score) {
      best = i;
      best_score = score;
    }
  }
  // MicroPrintf has no portable %f: print the score in thousandths.
  MicroPrintf("class %d, score %d/1000, arena used %d of %d bytes", best,
              static_cast<int>(best_score * 1000.0f),
              static_cast<int>(interpreter.arena_used_bytes()), kArenaSize);
  return 0;
}
