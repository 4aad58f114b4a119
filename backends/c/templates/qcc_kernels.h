/* qcc_kernels.h: the integer kernels of qcc's C backend (--target c), C99, no heap.
 *
 * Each kernel computes what TensorFlow Lite Micro's reference int8 kernel computes, bit for
 * bit (qcc verify checks every output element against qcc's integer reference). Activations
 * are int8, or int16 in TFLite's 16x8 scheme (the *_s16 kernels: zero point 0, int8 weights,
 * int64 biases), images NHWC. Every number a kernel needs
 * (zero points, requantization multipliers and shifts, clamps, tables, geometry) comes in
 * a const parameter struct that qcc computed at compile time; weights are laid out for the
 * loops here (convolutions OHWI, fully connected [out][in]).
 * This file is the same for every model.
 */
#ifndef QCC_KERNELS_H
#define QCC_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#define QCC_MAX_RANK 6
#define QCC_MAX_TAPS 64 /* depthwise windows up to k_h * k_w = 64 (larger ones run as grouped conv2d) */

/* CONV_2D (any group count, dilation; 1-D as height 1), NHWC. A window entirely inside the
 * image accumulates sum(w * x) + bias_eff (bias_eff = bias - in_zp * sum(w), folded at compile
 * time); one at the border sum(w * (x - in_zp)) + bias over its in-image taps. */
typedef struct {
  int32_t batch, in_h, in_w, in_c, out_h, out_w, out_c;
  int32_t k_h, k_w, stride_h, stride_w, dil_h, dil_w, pad_top, pad_left, groups;
  int32_t in_zp, out_zp, act_min, act_max;
  const int8_t *weights;    /* [out_c][k_h][k_w][in_c / groups] */
  const int32_t *bias;      /* [out_c] or NULL */
  const int32_t *bias_eff;  /* [out_c] (conv2d only) */
  const int32_t *mult;      /* [out_c] */
  const int32_t *shift;     /* [out_c], > 0: left shift */
} qcc_conv_params;
void qcc_conv2d(const qcc_conv_params *p, const int8_t *in, int8_t *out);
/* DEPTHWISE_CONV_2D: groups == in_c, out_c = in_c * multiplier, the same weight layout. */
void qcc_depthwise_conv2d(const qcc_conv_params *p, const int8_t *in, int8_t *out);
/* TRANSPOSE_CONV with the same struct: stride_* are the transposed strides, pad_* the top / left
 * crop, weights [out_c][k_h][k_w][in_c] (groups 1, no dilation). */
void qcc_conv_transpose(const qcc_conv_params *p, const int8_t *in, int8_t *out);

/* 16x8 CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED: int16 input and output (zero point 0),
 * int8 weights [out_c][k_h][k_w][in_c / groups] (depthwise: groups == in_c; fully connected: a
 * 1x1 convolution over in_h = rows). acc = sum(w * x) over in-image taps + bias, in int64;
 * acc64: requantized by the int64 MultiplyByQuantizedMultiplier (16-bit multiplier, one
 * rounding), else (an int32 bias) wrapped to int32 and requantized as int8 kernels do. */
typedef struct {
  int32_t batch, in_h, in_w, in_c, out_h, out_w, out_c;
  int32_t k_h, k_w, stride_h, stride_w, dil_h, dil_w, pad_top, pad_left, groups;
  int32_t acc64, act_min, act_max;
  const int8_t *weights;
  const int64_t *bias;      /* [out_c] or NULL */
  const int32_t *mult;      /* [out_c] */
  const int32_t *shift;     /* [out_c] */
} qcc_conv16_params;
void qcc_conv2d_s16(const qcc_conv16_params *p, const int16_t *in, int16_t *out);

/* FULLY_CONNECTED: out[r][o] from in[r][k] and weights[o][k]. */
typedef struct {
  int32_t rows, in_features, out_features, out_zp, act_min, act_max;
  int32_t per_channel;      /* mult / shift: one per output (1) or one for all (0) */
  const int8_t *weights;
  const int32_t *bias_eff;  /* [out_features]: bias - in_zp * sum(w) (folded at compile time) */
  const int32_t *mult;
  const int32_t *shift;
} qcc_fc_params;
void qcc_fully_connected(const qcc_fc_params *p, const int8_t *in, int8_t *out);

/* ADD (op 0), SUB (1), MUL (2), PRELU (3, b = alpha) with broadcasting: the output is dense
 * over dims[0..rank-1]; a and b are read with their strides (0 along broadcast axes). */
typedef struct {
  int32_t rank;
  int32_t dims[QCC_MAX_RANK], a_strides[QCC_MAX_RANK], b_strides[QCC_MAX_RANK];
  int32_t op, a_zp, b_zp, out_zp, left_shift;
  int32_t a_mult, a_shift, b_mult, b_shift, out_mult, out_shift, act_min, act_max;
} qcc_binary_params;
void qcc_binary(const qcc_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out);
/* int16 ADD / SUB (left_shift 15) and MUL (ops 0..2) with the same parameters. */
void qcc_binary_s16(const qcc_binary_params *p, const int16_t *a, const int16_t *b, int16_t *out);

/* MAX_POOL_2D / AVERAGE_POOL_2D over in-image taps, NHWC. The average divides by `count`,
 * or by counts[oy * out_w + ox] when windows differ, rounding half away from zero. */
typedef struct {
  int32_t batch, channels, in_h, in_w, out_h, out_w;
  int32_t k_h, k_w, stride_h, stride_w, dil_h, dil_w, pad_top, pad_left, act_min, act_max;
  int32_t count;
  const int32_t *counts;
} qcc_pool_params;
void qcc_max_pool(const qcc_pool_params *p, const int8_t *in, int8_t *out);
void qcc_avg_pool(const qcc_pool_params *p, const int8_t *in, int8_t *out);
void qcc_max_pool_s16(const qcc_pool_params *p, const int16_t *in, int16_t *out);
void qcc_avg_pool_s16(const qcc_pool_params *p, const int16_t *in, int16_t *out);

/* MEAN over the middle axis of [outer][count][inner]. */
typedef struct {
  int32_t outer, count, inner, in_zp, out_zp, mult, shift;
} qcc_mean_params;
void qcc_mean(const qcc_mean_params *p, const int8_t *in, int8_t *out);
void qcc_mean_s16(const qcc_mean_params *p, const int16_t *in, int16_t *out);

/* SOFTMAX over rows of n int8 values; tables indexed by max - x (0..255). */
typedef struct {
  int32_t rows, n;
  const int32_t *exp_table;  /* exp(-d) in Q0.31 */
  const int32_t *sum_table;  /* its Q12.19 share of the row sum */
} qcc_softmax_params;
void qcc_softmax_s8(const qcc_softmax_params *p, const int8_t *in, int8_t *out);
void qcc_softmax_s8_s16(const qcc_softmax_params *p, const int8_t *in, int16_t *out);

/* SOFTMAX on int16 input (zero point 0), int16 output (1/32768, 0). */
typedef struct {
  int32_t rows, n, mult, shift;
  const int16_t *exp_lut;    /* 513 entries */
  const int16_t *recip_lut;  /* 513 entries */
} qcc_softmax16_params;
void qcc_softmax_s16(const qcc_softmax16_params *p, const int16_t *in, int16_t *out);

/* One-input int8 ops as tables: out[i] = table[in[i] + 128]. */
typedef struct {
  int32_t count;
  const int8_t *table;
} qcc_lut_params;
typedef struct {
  int32_t count;
  const int16_t *table;
} qcc_lut16_params;
void qcc_lut_s8(const qcc_lut_params *p, const int8_t *in, int8_t *out);
void qcc_lut_s8_s16(const qcc_lut16_params *p, const int8_t *in, int16_t *out);

/* One-input int16 ops (zero points 0), by `op`:
 *   0 RELU        clamp(MBQM(x - in_zp, mult, shift) + out_zp, act_min, act_max)
 *   1 RELU6 / MINIMUM / MAXIMUM   clamp(x, act_min, act_max) (raw values)
 *   2 LEAKY_RELU  x >= in_zp: MBQM(x - in_zp, mult, shift); else sign(mult2) * MBQM(x - in_zp,
 *                 |mult2|, shift2); + out_zp
 *   3 LOGISTIC, 4 TANH   v = (x * mult + round) >> shift (steps of 1 / 12288), then table[256]
 *                 (65536 sigmoid(i / 24)) interpolated with 9 (LOGISTIC) / 8 (TANH) bits of |v| */
typedef struct {
  int32_t count, op, in_zp, out_zp, mult, shift, mult2, shift2, act_min, act_max;
  const int32_t *table;
} qcc_act16_params;
void qcc_act_s16(const qcc_act16_params *p, const int16_t *in, int16_t *out);

/* QUANTIZE int16 -> int8 / int16. */
typedef struct {
  int32_t count, in_zp, out_zp, mult, shift, qmin, qmax;
} qcc_requantize_params;
void qcc_requantize_s16_s8(const qcc_requantize_params *p, const int16_t *in, int8_t *out);
void qcc_requantize_s16_s16(const qcc_requantize_params *p, const int16_t *in, int16_t *out);

/* RESIZE_NEAREST_NEIGHBOR / RESIZE_BILINEAR (10-bit weights), NHWC, by index tables. */
typedef struct {
  int32_t batch, channels, in_h, in_w, out_h, out_w, bilinear;
  const int32_t *y_lo, *y_hi, *y_frac, *x_lo, *x_hi, *x_frac;
} qcc_resize_params;
void qcc_resize(const qcc_resize_params *p, const int8_t *in, int8_t *out);
void qcc_resize_nearest_s16(const qcc_resize_params *p, const int16_t *in, int16_t *out);

/* Data movement: dst[dst_offset + sum i_k * dst_strides[k]] = src[src_offset + sum i_k *
 * src_strides[k]] over dims (elements of elem_bytes = 1 or 2); fill sets count elements. */
typedef struct {
  int32_t rank, elem_bytes;
  int32_t dims[QCC_MAX_RANK], src_strides[QCC_MAX_RANK], dst_strides[QCC_MAX_RANK];
  int32_t src_offset, dst_offset;
} qcc_copy_params;
void qcc_copy(const qcc_copy_params *p, const void *src, void *dst);

typedef struct {
  int32_t count, elem_bytes, value;
} qcc_fill_params;
void qcc_fill(const qcc_fill_params *p, void *dst);

#endif /* QCC_KERNELS_H */
