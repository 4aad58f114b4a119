/* qcc_kernels.c: see qcc_kernels.h. The fixed-point helpers follow gemmlowp / TFLM's
 * reference code (kernels/internal/common.h: MultiplyByQuantizedMultiplier with its
 * double rounding, SaturatingRoundingDoublingHighMul, RoundingDivideByPOT); int32
 * wrap-around is spelled with uint32_t so that it is defined behaviour in C. */
#include "qcc_kernels.h"

#define QCC_INT32_MIN (-2147483647 - 1)
#define QCC_INT32_MAX 2147483647

static int32_t wrap_add(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }
static int32_t wrap_sub(int32_t a, int32_t b) { return (int32_t)((uint32_t)a - (uint32_t)b); }

static int32_t srdhm(int32_t a, int32_t b) {
  int64_t ab;
  if (a == QCC_INT32_MIN && b == QCC_INT32_MIN) return QCC_INT32_MAX;
  ab = (int64_t)a * (int64_t)b;
  ab += ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
  return (int32_t)(ab / ((int64_t)1 << 31));
}

static int32_t rdbpot(int32_t x, int32_t e) {
  const int32_t mask = (int32_t)(((int64_t)1 << e) - 1);
  const int32_t rem = x & mask;
  const int32_t thr = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> e) + (rem > thr ? 1 : 0);
}

static int32_t mbqm(int32_t x, int32_t m, int32_t shift) {
  const int32_t left = shift > 0 ? shift : 0;
  const int32_t right = shift > 0 ? 0 : -shift;
  return rdbpot(srdhm((int32_t)((uint32_t)x << left), m), right);
}

static int32_t clamp(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* First and one-past-last tap k of a window starting at i0 (stride d) inside [0, n). */
static int32_t tap_begin(int32_t i0, int32_t d) { return i0 >= 0 ? 0 : (-i0 + d - 1) / d; }
static int32_t tap_end(int32_t i0, int32_t d, int32_t k, int32_t n) {
  int32_t e;
  if (i0 >= n) return 0;
  e = (n - i0 + d - 1) / d;
  return e < k ? e : k;
}

/* ---- convolution, fully connected ------------------------------------------------------ */



static int32_t dot_offset(const int8_t *w, const int8_t *x, int32_t n, int32_t zp) {
  int32_t acc = 0, i;
  for (i = 0; i < n; ++i) acc += w[i] * (x[i] - zp);
  return acc;
}

#if defined(__ARM_FEATURE_SIMD32) && __ARM_FEATURE_SIMD32 && !defined(QCC_NO_SIMD)
/* Cortex-M4 / M7 / M33 / M55 (DSP extension): four int8 at a time, as two pairs of int16
 * (SXTB16 of the word and of the word rotated by 8) multiplied and summed by SMLAD. Integer
 * sums are exact in any order, so this computes what the plain C loop computes. */
#include <arm_acle.h>
#include <string.h>
#define QCC_SIMD 1

static uint32_t load4(const int8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);  /* one unaligned LDR on these cores */
  return v;
}

/* bytes 1 and 3 sign-extended to int16 (SXTB16 with ROR #8: one instruction) */
static int16x2_t sxtb16_odd(uint32_t v) {
  int16x2_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
  return r;
}

/* acc += sum of the 4 products of w[0..3] and the int16 pairs (x02, x13) */
static int32_t smlad4(const int8_t *w, int16x2_t x02, int16x2_t x13, int32_t acc) {
  const uint32_t v = load4(w);
  acc = __smlad(__sxtb16((int8x4_t)v), x02, acc);
  return __smlad(sxtb16_odd(v), x13, acc);
}
#endif

static int32_t dot(const int8_t *w, const int8_t *x, int32_t n) {
  int32_t acc = 0, i = 0;
#ifdef QCC_SIMD
  for (; i + 4 <= n; i += 4) {
    const uint32_t v = load4(x + i);
    acc = smlad4(w + i, __sxtb16((int8x4_t)v), sxtb16_odd(v), acc);
  }
#endif
  for (; i < n; ++i) acc += w[i] * x[i];
  return acc;
}

/* acc[k] += sum_i w[k * stride + i] * (x[i] - zp), k = 0..3: x is read once for 4 outputs */
static void dot4(const int8_t *w, int32_t stride, const int8_t *x, int32_t n, int32_t zp, int32_t *acc) {
  const int8_t *w1 = w + stride, *w2 = w1 + stride, *w3 = w2 + stride;
  int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, i = 0;
#ifdef QCC_SIMD
  const int16x2_t offset = (int16x2_t)(((uint32_t)-zp & 0xFFFFu) * 0x10001u);
  for (; i + 4 <= n; i += 4) {
    const uint32_t v = load4(x + i);
    const int16x2_t x02 = __sadd16(__sxtb16((int8x4_t)v), offset);
    const int16x2_t x13 = __sadd16(sxtb16_odd(v), offset);
    a0 = smlad4(w + i, x02, x13, a0);
    a1 = smlad4(w1 + i, x02, x13, a1);
    a2 = smlad4(w2 + i, x02, x13, a2);
    a3 = smlad4(w3 + i, x02, x13, a3);
  }
#endif
  for (; i < n; ++i) {
    const int32_t v = x[i] - zp;
    a0 += w[i] * v;
    a1 += w1[i] * v;
    a2 += w2[i] * v;
    a3 += w3[i] * v;
  }
  acc[0] += a0;
  acc[1] += a1;
  acc[2] += a2;
  acc[3] += a3;
}

static int8_t requantize(int32_t acc, const qcc_conv_params *p, int32_t o) {
  acc = mbqm(acc, p->mult[o], p->shift[o]) + p->out_zp;
  return (int8_t)clamp(acc, p->act_min, p->act_max);
}

/* groups == 1, no horizontal dilation: each window row is one run of memory in the input
 * and in every output channel's weights; four output channels share each input load. */
static void conv_rows(const qcc_conv_params *p, const int8_t *img, int32_t iy0, int32_t ky0, int32_t ky1,
                      int32_t ix0, int32_t kx0, int32_t kx1, int8_t *out) {
  const int32_t per_out = p->k_h * p->k_w * p->in_c, run = (kx1 - kx0) * p->in_c;
  const int inside = ky0 == 0 && ky1 == p->k_h && kx0 == 0 && kx1 == p->k_w;
  const int32_t zp = inside ? 0 : p->in_zp;
  int32_t o = 0, k, ky;
  for (; o < p->out_c; o += 4) {
    const int32_t n = p->out_c - o < 4 ? p->out_c - o : 4;
    int32_t acc[4] = {0, 0, 0, 0};
    for (ky = ky0; ky < ky1; ++ky) {
      const int8_t *x = img + (size_t)(((iy0 + ky * p->dil_h) * p->in_w + ix0 + kx0) * p->in_c);
      const int8_t *w = p->weights + (size_t)o * (size_t)per_out + (ky * p->k_w + kx0) * p->in_c;
      if (n == 4) dot4(w, per_out, x, run, zp, acc);
      else
        for (k = 0; k < n; ++k) acc[k] += dot_offset(w + k * per_out, x, run, zp);
    }
    for (k = 0; k < n; ++k) {
      int32_t a = acc[k];
      if (inside) a = wrap_add(a, p->bias_eff[o + k]);
      else if (p->bias) a = wrap_add(a, p->bias[o + k]);
      out[o + k] = requantize(a, p, o + k);
    }
  }
}

void qcc_conv2d(const qcc_conv_params *p, const int8_t *in, int8_t *out) {
  const int32_t cg = p->in_c / p->groups, og = p->out_c / p->groups;
  const int32_t per_out = p->k_h * p->k_w * cg;
  int32_t b, oy, ox, o, ky, kx;
  for (b = 0; b < p->batch; ++b) {
    const int8_t *img = in + (size_t)b * (size_t)(p->in_h * p->in_w * p->in_c);
    for (oy = 0; oy < p->out_h; ++oy) {
      const int32_t iy0 = oy * p->stride_h - p->pad_top;
      const int32_t ky0 = tap_begin(iy0, p->dil_h), ky1 = tap_end(iy0, p->dil_h, p->k_h, p->in_h);
      for (ox = 0; ox < p->out_w; ++ox, out += p->out_c) {
        const int32_t ix0 = ox * p->stride_w - p->pad_left;
        const int32_t kx0 = tap_begin(ix0, p->dil_w), kx1 = tap_end(ix0, p->dil_w, p->k_w, p->in_w);
        if (p->groups == 1 && p->dil_w == 1) {
          conv_rows(p, img, iy0, ky0, ky1, ix0, kx0, kx1, out);
          continue;
        }
        for (o = 0; o < p->out_c; ++o) {
          const int8_t *w = p->weights + (size_t)o * (size_t)per_out;
          const int32_t g0 = (o / og) * cg;
          int32_t acc = 0;
          for (ky = ky0; ky < ky1; ++ky) {
            const int8_t *row = img + (size_t)((iy0 + ky * p->dil_h) * p->in_w) * (size_t)p->in_c + g0;
            for (kx = kx0; kx < kx1; ++kx)
              acc += dot_offset(w + (ky * p->k_w + kx) * cg, row + (size_t)((ix0 + kx * p->dil_w) * p->in_c), cg,
                                p->in_zp);
          }
          if (p->bias) acc = wrap_add(acc, p->bias[o]);
          out[o] = requantize(acc, p, o);
        }
      }
    }
  }
}

/* Channel by channel with the accumulator in a register; the taps' input offsets are computed
 * once per call. Windows inside the image skip the zero-point subtraction (bias_eff). */
void qcc_depthwise_conv2d(const qcc_conv_params *p, const int8_t *in, int8_t *out) {
  const int32_t in_h = p->in_h, in_w = p->in_w, c = p->in_c, oc = p->out_c, m = oc / c;
  const int32_t kh = p->k_h, kw = p->k_w, taps = kh * kw, zp = p->in_zp;
  const int8_t *weights = p->weights;
  int32_t off[QCC_MAX_TAPS];
  int32_t b, oy, ox, o, ky, kx, t;
  for (ky = 0; ky < kh; ++ky)
    for (kx = 0; kx < kw; ++kx) off[ky * kw + kx] = (ky * p->dil_h * in_w + kx * p->dil_w) * c;
  for (b = 0; b < p->batch; ++b) {
    const int8_t *img = in + (size_t)b * (size_t)(in_h * in_w * c);
    for (oy = 0; oy < p->out_h; ++oy) {
      const int32_t iy0 = oy * p->stride_h - p->pad_top;
      const int32_t ky0 = tap_begin(iy0, p->dil_h), ky1 = tap_end(iy0, p->dil_h, kh, in_h);
      for (ox = 0; ox < p->out_w; ++ox, out += oc) {
        const int32_t ix0 = ox * p->stride_w - p->pad_left;
        const int32_t kx0 = tap_begin(ix0, p->dil_w), kx1 = tap_end(ix0, p->dil_w, kw, in_w);
        const int8_t *origin = img + ((ptrdiff_t)iy0 * in_w + ix0) * c;
        if (ky0 == 0 && ky1 == kh && kx0 == 0 && kx1 == kw) {
          for (o = 0; o < oc; ++o) {
            const int8_t *x = origin + o / m, *w = weights + (size_t)o * (size_t)taps;
            int32_t acc = 0;
            for (t = 0; t < taps; ++t) acc += w[t] * x[off[t]];
            out[o] = requantize(wrap_add(acc, p->bias_eff[o]), p, o);
          }
          continue;
        }
        for (o = 0; o < oc; ++o) {
          const int8_t *x = origin + o / m, *w = weights + (size_t)o * (size_t)taps;
          int32_t acc = 0;
          for (ky = ky0; ky < ky1; ++ky)
            for (kx = kx0; kx < kx1; ++kx) acc += w[ky * kw + kx] * (x[off[ky * kw + kx]] - zp);
          out[o] = requantize(p->bias ? wrap_add(acc, p->bias[o]) : acc, p, o);
        }
      }
    }
  }
}

/* Gathers, for each output pixel, the input pixels whose scattered window covers it. */
void qcc_conv_transpose(const qcc_conv_params *p, const int8_t *in, int8_t *out) {
  const int32_t per_out = p->k_h * p->k_w * p->in_c;
  int32_t b, oy, ox, o, ky, kx, c;
  for (b = 0; b < p->batch; ++b) {
    const int8_t *img = in + (size_t)b * (size_t)(p->in_h * p->in_w * p->in_c);
    for (oy = 0; oy < p->out_h; ++oy) {
      const int32_t fy = oy + p->pad_top;
      for (ox = 0; ox < p->out_w; ++ox) {
        const int32_t fx = ox + p->pad_left;
        for (o = 0; o < p->out_c; ++o) {
          const int8_t *w = p->weights + (size_t)o * (size_t)per_out;
          int32_t acc = 0;
          for (ky = 0; ky < p->k_h && fy - ky >= 0; ++ky) {
            const int32_t iy = (fy - ky) / p->stride_h;
            if ((fy - ky) % p->stride_h != 0 || iy >= p->in_h) continue;
            for (kx = 0; kx < p->k_w && fx - kx >= 0; ++kx) {
              const int32_t ix = (fx - kx) / p->stride_w;
              const int8_t *px, *wp;
              if ((fx - kx) % p->stride_w != 0 || ix >= p->in_w) continue;
              px = img + (size_t)((iy * p->in_w + ix) * p->in_c);
              wp = w + (ky * p->k_w + kx) * p->in_c;
              for (c = 0; c < p->in_c; ++c) acc += wp[c] * (px[c] - p->in_zp);
            }
          }
          if (p->bias) acc = wrap_add(acc, p->bias[o]);
          acc = mbqm(acc, p->mult[o], p->shift[o]) + p->out_zp;
          *out++ = (int8_t)clamp(acc, p->act_min, p->act_max);
        }
      }
    }
  }
}

void qcc_fully_connected(const qcc_fc_params *p, const int8_t *in, int8_t *out) {
  const int32_t k = p->in_features;
  int32_t r, o;
  for (r = 0; r < p->rows; ++r) {
    const int8_t *x = in + (size_t)r * (size_t)k;
    for (o = 0; o < p->out_features; o += 4) {
      const int32_t n = p->out_features - o < 4 ? p->out_features - o : 4;
      int32_t acc[4] = {0, 0, 0, 0}, j;
      if (n == 4) dot4(p->weights + (size_t)o * (size_t)k, k, x, k, 0, acc);
      else
        for (j = 0; j < n; ++j) acc[j] = dot(p->weights + (size_t)(o + j) * (size_t)k, x, k);
      for (j = 0; j < n; ++j) {
        const int32_t ch = p->per_channel ? o + j : 0;
        const int32_t y = mbqm(wrap_add(acc[j], p->bias_eff[o + j]), p->mult[ch], p->shift[ch]) + p->out_zp;
        *out++ = (int8_t)clamp(y, p->act_min, p->act_max);
      }
    }
  }
}

/* ---- 16x8: int16 activations, int8 weights --------------------------------------------------- */

/* The int64 MultiplyByQuantizedMultiplier: the multiplier rounded to 16 bits, one rounding shift
 * (15 - shift >= 1: the emitter checks it); the result wraps to int32 as TFLM's cast does. */
static int32_t mbqm64(int64_t x, int32_t m, int32_t shift) {
  const int64_t m16 = m < 0x7FFF0000 ? ((int64_t)m + (1 << 15)) >> 16 : 0x7FFF;
  const int32_t total = 15 - shift;
  return (int32_t)(uint32_t)(uint64_t)((x * m16 + ((int64_t)1 << (total - 1))) >> total);
}

#ifdef QCC_SIMD
/* two int16 at a time as one word; (x0, x2) and (x1, x3) of two such words (PKHBT / PKHTB) pair
 * with SXTB16's (w0, w2) and (w1, w3) for SMLAD */
static uint32_t load2(const int16_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}
static int16x2_t pack_even(uint32_t x01, uint32_t x23) { return (int16x2_t)((x01 & 0xFFFFu) | (x23 << 16)); }
static int16x2_t pack_odd(uint32_t x01, uint32_t x23) { return (int16x2_t)((x23 & 0xFFFF0000u) | (x01 >> 16)); }
#endif

/* Products of int8 weights and int16 inputs are at most 2^22 in magnitude: int32 sums of runs of
 * at most QCC_RUN16 of them cannot overflow; the runs are added to int64 accumulators. */
#define QCC_RUN16 256

static int64_t dot_s16(const int8_t *w, const int16_t *x, int32_t n) {
  int64_t acc = 0;
  int32_t i = 0;
  while (i < n) {
    const int32_t end = n - i < QCC_RUN16 ? n : i + QCC_RUN16;
    int32_t part = 0;
#ifdef QCC_SIMD
    for (; i + 4 <= end; i += 4) {
      const uint32_t x01 = load2(x + i), x23 = load2(x + i + 2);
      part = smlad4(w + i, pack_even(x01, x23), pack_odd(x01, x23), part);
    }
#endif
    for (; i < end; ++i) part += w[i] * x[i];
    acc += part;
  }
  return acc;
}

/* acc[k] += sum_i w[k * stride + i] * x[i], k = 0..3: x is read once for 4 outputs */
static void dot4_s16(const int8_t *w, int32_t stride, const int16_t *x, int32_t n, int64_t *acc) {
  const int8_t *w1 = w + stride, *w2 = w1 + stride, *w3 = w2 + stride;
  int32_t i = 0;
  while (i < n) {
    const int32_t end = n - i < QCC_RUN16 ? n : i + QCC_RUN16;
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
#ifdef QCC_SIMD
    for (; i + 4 <= end; i += 4) {
      const uint32_t x01 = load2(x + i), x23 = load2(x + i + 2);
      const int16x2_t x02 = pack_even(x01, x23), x13 = pack_odd(x01, x23);
      a0 = smlad4(w + i, x02, x13, a0);
      a1 = smlad4(w1 + i, x02, x13, a1);
      a2 = smlad4(w2 + i, x02, x13, a2);
      a3 = smlad4(w3 + i, x02, x13, a3);
    }
#endif
    for (; i < end; ++i) {
      const int32_t v = x[i];
      a0 += w[i] * v;
      a1 += w1[i] * v;
      a2 += w2[i] * v;
      a3 += w3[i] * v;
    }
    acc[0] += a0;
    acc[1] += a1;
    acc[2] += a2;
    acc[3] += a3;
  }
}

static int16_t requantize16(int64_t acc, const qcc_conv16_params *p, int32_t o) {
  const int32_t y = p->acc64 ? mbqm64(acc, p->mult[o], p->shift[o])
                             : mbqm((int32_t)(uint32_t)(uint64_t)acc, p->mult[o], p->shift[o]);
  return (int16_t)clamp(y, p->act_min, p->act_max);
}

/* groups == 1, no horizontal dilation: a window row is one run of memory, 4 output channels at a time */
static void conv_rows_s16(const qcc_conv16_params *p, const int16_t *img, int32_t iy0, int32_t ky0, int32_t ky1,
                          int32_t ix0, int32_t kx0, int32_t kx1, int16_t *out) {
  const int32_t per_out = p->k_h * p->k_w * p->in_c, run = (kx1 - kx0) * p->in_c;
  int32_t o = 0, k, ky;
  for (; o < p->out_c; o += 4) {
    const int32_t n = p->out_c - o < 4 ? p->out_c - o : 4;
    int64_t acc[4];   /* (no initializer: that may become a memset call, and the firmware has no libc) */
    for (k = 0; k < 4; ++k) acc[k] = p->bias && k < n ? p->bias[o + k] : 0;
    for (ky = ky0; ky < ky1; ++ky) {
      const int16_t *x = img + (size_t)(((iy0 + ky * p->dil_h) * p->in_w + ix0 + kx0) * p->in_c);
      const int8_t *w = p->weights + (size_t)o * (size_t)per_out + (ky * p->k_w + kx0) * p->in_c;
      if (n == 4) dot4_s16(w, per_out, x, run, acc);
      else
        for (k = 0; k < n; ++k) acc[k] += dot_s16(w + k * per_out, x, run);
    }
    for (k = 0; k < n; ++k) out[o + k] = requantize16(acc[k], p, o + k);
  }
}

/* depthwise, k_h * k_w <= QCC_MAX_TAPS: the taps' offsets once per call, int32 sums of the taps
 * (at most 64 * 2^22) added to the int64 bias */
static void depthwise_s16(const qcc_conv16_params *p, const int16_t *in, int16_t *out) {
  const int32_t in_h = p->in_h, in_w = p->in_w, c = p->in_c, oc = p->out_c, m = oc / c;
  const int32_t kh = p->k_h, kw = p->k_w, taps = kh * kw;
  int32_t off[QCC_MAX_TAPS];
  int32_t b, oy, ox, o, ky, kx, t;
  for (ky = 0; ky < kh; ++ky)
    for (kx = 0; kx < kw; ++kx) off[ky * kw + kx] = (ky * p->dil_h * in_w + kx * p->dil_w) * c;
  for (b = 0; b < p->batch; ++b) {
    const int16_t *img = in + (size_t)b * (size_t)(in_h * in_w * c);
    for (oy = 0; oy < p->out_h; ++oy) {
      const int32_t iy0 = oy * p->stride_h - p->pad_top;
      const int32_t ky0 = tap_begin(iy0, p->dil_h), ky1 = tap_end(iy0, p->dil_h, kh, in_h);
      for (ox = 0; ox < p->out_w; ++ox, out += oc) {
        const int32_t ix0 = ox * p->stride_w - p->pad_left;
        const int32_t kx0 = tap_begin(ix0, p->dil_w), kx1 = tap_end(ix0, p->dil_w, kw, in_w);
        const int16_t *origin = img + ((ptrdiff_t)iy0 * in_w + ix0) * c;
        const int inside = ky0 == 0 && ky1 == kh && kx0 == 0 && kx1 == kw;
        for (o = 0; o < oc; ++o) {
          const int16_t *x = origin + o / m;
          const int8_t *w = p->weights + (size_t)o * (size_t)taps;
          int32_t acc = 0;
          if (inside)
            for (t = 0; t < taps; ++t) acc += w[t] * x[off[t]];
          else
            for (ky = ky0; ky < ky1; ++ky)
              for (kx = kx0; kx < kx1; ++kx) acc += w[ky * kw + kx] * x[off[ky * kw + kx]];
          out[o] = requantize16((p->bias ? p->bias[o] : 0) + acc, p, o);
        }
      }
    }
  }
}

void qcc_conv2d_s16(const qcc_conv16_params *p, const int16_t *in, int16_t *out) {
  const int32_t cg = p->in_c / p->groups, og = p->out_c / p->groups;
  const int32_t per_out = p->k_h * p->k_w * cg;
  int32_t b, oy, ox, o, ky, kx;
  if (cg == 1 && p->groups == p->in_c && p->groups > 1 && p->k_h * p->k_w <= QCC_MAX_TAPS) {
    depthwise_s16(p, in, out);
    return;
  }
  for (b = 0; b < p->batch; ++b) {
    const int16_t *img = in + (size_t)b * (size_t)(p->in_h * p->in_w * p->in_c);
    for (oy = 0; oy < p->out_h; ++oy) {
      const int32_t iy0 = oy * p->stride_h - p->pad_top;
      const int32_t ky0 = tap_begin(iy0, p->dil_h), ky1 = tap_end(iy0, p->dil_h, p->k_h, p->in_h);
      for (ox = 0; ox < p->out_w; ++ox, out += p->out_c) {
        const int32_t ix0 = ox * p->stride_w - p->pad_left;
        const int32_t kx0 = tap_begin(ix0, p->dil_w), kx1 = tap_end(ix0, p->dil_w, p->k_w, p->in_w);
        if (p->groups == 1 && p->dil_w == 1) {
          conv_rows_s16(p, img, iy0, ky0, ky1, ix0, kx0, kx1, out);
          continue;
        }
        for (o = 0; o < p->out_c; ++o) {
          const int8_t *w = p->weights + (size_t)o * (size_t)per_out;
          const int32_t g0 = (o / og) * cg;
          int64_t acc = p->bias ? p->bias[o] : 0;
          for (ky = ky0; ky < ky1; ++ky) {
            const int16_t *row = img + (size_t)((iy0 + ky * p->dil_h) * p->in_w) * (size_t)p->in_c + g0;
            for (kx = kx0; kx < kx1; ++kx)
              acc += dot_s16(w + (ky * p->k_w + kx) * cg, row + (ptrdiff_t)(ix0 + kx * p->dil_w) * p->in_c, cg);
          }
          out[o] = requantize16(acc, p, o);
        }
      }
    }
  }
}

/* ---- elementwise ----------------------------------------------------------------------- */

static inline int32_t binary_value(const qcc_binary_params *p, int32_t a, int32_t b) {
  int32_t y;
  a -= p->a_zp;
  b -= p->b_zp;
  switch (p->op) {
    case 0:
    case 1: {
      const int32_t sa = rdbpot(srdhm(a * (1 << p->left_shift), p->a_mult), -p->a_shift);
      const int32_t sb = rdbpot(srdhm(b * (1 << p->left_shift), p->b_mult), -p->b_shift);
      const int32_t raw = p->op == 0 ? wrap_add(sa, sb) : wrap_sub(sa, sb);
      y = rdbpot(srdhm(raw, p->out_mult), -p->out_shift) + p->out_zp;
      break;
    }
    case 2:
      y = mbqm(a * b, p->out_mult, p->out_shift) + p->out_zp;
      break;
    default:
      y = (a >= 0 ? mbqm(a, p->a_mult, p->a_shift) : mbqm(a * b, p->b_mult, p->b_shift)) + p->out_zp;
      break;
  }
  return clamp(y, p->act_min, p->act_max);
}

/* the output dense over dims, the operands read with their strides (an odometer over the outer axes) */
#define QCC_BINARY(NAME, T)                                                                       \
  void NAME(const qcc_binary_params *p, const T *a, const T *b, T *out) {                        \
    const int32_t r = p->rank, n = p->dims[r - 1];                                                \
    const int32_t sa = p->a_strides[r - 1], sb = p->b_strides[r - 1];                             \
    int32_t idx[QCC_MAX_RANK] = {0};                                                              \
    int32_t outer = 1, oa = 0, ob = 0, t, i, k;                                                   \
    for (k = 0; k < r - 1; ++k) outer *= p->dims[k];                                              \
    for (t = 0; t < outer; ++t) {                                                                 \
      for (i = 0; i < n; ++i) *out++ = (T)binary_value(p, a[oa + i * sa], b[ob + i * sb]);        \
      for (k = r - 2; k >= 0; --k) {                                                              \
        oa += p->a_strides[k];                                                                    \
        ob += p->b_strides[k];                                                                    \
        if (++idx[k] < p->dims[k]) break;                                                         \
        oa -= p->a_strides[k] * p->dims[k];                                                       \
        ob -= p->b_strides[k] * p->dims[k];                                                       \
        idx[k] = 0;                                                                               \
      }                                                                                           \
    }                                                                                             \
  }
QCC_BINARY(qcc_binary, int8_t)
QCC_BINARY(qcc_binary_s16, int16_t)

void qcc_lut_s8(const qcc_lut_params *p, const int8_t *in, int8_t *out) {
  int32_t i;
  for (i = 0; i < p->count; ++i) out[i] = p->table[in[i] + 128];
}

void qcc_lut_s8_s16(const qcc_lut16_params *p, const int8_t *in, int16_t *out) {
  int32_t i;
  for (i = 0; i < p->count; ++i) out[i] = p->table[in[i] + 128];
}

void qcc_requantize_s16_s8(const qcc_requantize_params *p, const int16_t *in, int8_t *out) {
  int32_t i;
  for (i = 0; i < p->count; ++i)
    out[i] = (int8_t)clamp(mbqm(in[i] - p->in_zp, p->mult, p->shift) + p->out_zp, p->qmin, p->qmax);
}

void qcc_requantize_s16_s16(const qcc_requantize_params *p, const int16_t *in, int16_t *out) {
  int32_t i;
  for (i = 0; i < p->count; ++i)
    out[i] = (int16_t)clamp(mbqm(in[i] - p->in_zp, p->mult, p->shift) + p->out_zp, p->qmin, p->qmax);
}

/* (T[h] << bits) + frac * (T[h + 1] - T[h]) for h = a >> bits < 255, else `saturated` */
static int32_t sigmoid_interp(int32_t a, const int32_t *t, int32_t bits, int32_t saturated) {
  const int32_t h = a >> bits;
  if (h >= 255) return saturated;
  return (t[h] << bits) + (a & ((1 << bits) - 1)) * (t[h + 1] - t[h]);
}

void qcc_act_s16(const qcc_act16_params *p, const int16_t *in, int16_t *out) {
  int32_t i;
  for (i = 0; i < p->count; ++i) {
    const int32_t x = in[i] - p->in_zp;
    int32_t y;
    if (p->op == 0) {
      y = mbqm(x, p->mult, p->shift) + p->out_zp;
    } else if (p->op == 1) {
      y = in[i];
    } else if (p->op == 2) {
      if (x >= 0) y = mbqm(x, p->mult, p->shift);
      else y = p->mult2 < 0 ? -mbqm(x, -p->mult2, p->shift2) : mbqm(x, p->mult2, p->shift2);
      y += p->out_zp;
    } else {
      const int64_t round = p->shift > 0 ? (int64_t)1 << (p->shift - 1) : 0;
      const int32_t v = (int32_t)(((int64_t)in[i] * p->mult + round) >> p->shift), a = v < 0 ? -v : v;
      int32_t r;
      if (p->op == 3) {
        r = sigmoid_interp(a, p->table, 9, 0x7FFF << 10);
        y = (v >= 0 ? r + (1 << 9) : (1 << 25) - r + (1 << 9) - 1) >> 10;
      } else {
        r = sigmoid_interp(a, p->table, 8, 0xFFFF << 8);
        y = (v >= 0 ? r - (1 << 23) + (1 << 7) : -r + (1 << 23) + (1 << 7) - 1) >> 8;
      }
    }
    out[i] = (int16_t)clamp(y, p->act_min, p->act_max);
  }
}

/* ---- pooling, mean ----------------------------------------------------------------------- */

#define QCC_POOL(NAME, T, LOWEST)                                                                   \
  static void NAME(const qcc_pool_params *p, const T *in, T *out, int average) {                      \
    int32_t b, oy, ox, c, ky, kx;                                                                      \
    for (b = 0; b < p->batch; ++b) {                                                                   \
      const T *img = in + (size_t)b * (size_t)(p->in_h * p->in_w * p->channels);                      \
      for (oy = 0; oy < p->out_h; ++oy) {                                                              \
        const int32_t iy0 = oy * p->stride_h - p->pad_top;                                             \
        const int32_t ky0 = tap_begin(iy0, p->dil_h), ky1 = tap_end(iy0, p->dil_h, p->k_h, p->in_h);   \
        for (ox = 0; ox < p->out_w; ++ox) {                                                            \
          const int32_t ix0 = ox * p->stride_w - p->pad_left;                                          \
          const int32_t kx0 = tap_begin(ix0, p->dil_w), kx1 = tap_end(ix0, p->dil_w, p->k_w, p->in_w); \
          const int32_t count = p->counts ? p->counts[oy * p->out_w + ox] : p->count;                  \
          for (c = 0; c < p->channels; ++c) {                                                          \
            int32_t acc = average ? 0 : LOWEST;                                                        \
            for (ky = ky0; ky < ky1; ++ky) {                                                           \
              const T *row = img + (size_t)((iy0 + ky * p->dil_h) * p->in_w) * (size_t)p->channels + c; \
              for (kx = kx0; kx < kx1; ++kx) {                                                         \
                const int32_t v = row[(ix0 + kx * p->dil_w) * p->channels];                            \
                if (average) acc += v;                                                                 \
                else if (v > acc) acc = v;                                                             \
              }                                                                                        \
            }                                                                                          \
            if (average) acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;        \
            *out++ = (T)clamp(acc, p->act_min, p->act_max);                                            \
          }                                                                                            \
        }                                                                                              \
      }                                                                                                \
    }                                                                                                  \
  }
QCC_POOL(pool, int8_t, -128)
QCC_POOL(pool_s16, int16_t, -32768)

void qcc_max_pool(const qcc_pool_params *p, const int8_t *in, int8_t *out) { pool(p, in, out, 0); }
void qcc_avg_pool(const qcc_pool_params *p, const int8_t *in, int8_t *out) { pool(p, in, out, 1); }
void qcc_max_pool_s16(const qcc_pool_params *p, const int16_t *in, int16_t *out) { pool_s16(p, in, out, 0); }
void qcc_avg_pool_s16(const qcc_pool_params *p, const int16_t *in, int16_t *out) { pool_s16(p, in, out, 1); }

/* MEAN: the raw sum (int32, wrapping), less in_zp * count, requantized, clamped to the type */
#define QCC_MEAN(NAME, T, LO, HI)                                                                 \
  void NAME(const qcc_mean_params *p, const T *in, T *out) {                                     \
    int32_t o, i, r;                                                                             \
    for (o = 0; o < p->outer; ++o) {                                                             \
      for (i = 0; i < p->inner; ++i) {                                                           \
        const T *x = in + (size_t)o * (size_t)(p->count * p->inner) + i;                         \
        int32_t sum = 0;                                                                         \
        for (r = 0; r < p->count; ++r) sum = wrap_add(sum, x[r * p->inner]);                     \
        sum = wrap_sub(sum, p->in_zp * p->count);                                                \
        *out++ = (T)clamp(mbqm(sum, p->mult, p->shift) + p->out_zp, LO, HI);                     \
      }                                                                                          \
    }                                                                                            \
  }
QCC_MEAN(qcc_mean, int8_t, -128, 127)
QCC_MEAN(qcc_mean_s16, int16_t, -32768, 32767)

/* ---- softmax ------------------------------------------------------------------------------ */

static int32_t clz32(uint32_t x) {
  int32_t n = 0;
  if (x == 0) return 32;
  while (!(x & 0x80000000u)) {
    x <<= 1;
    ++n;
  }
  return n;
}

static int32_t srmpot(int32_t x, int32_t e) { /* saturating x * 2^e, e > 0 */
  const int32_t thr = (int32_t)(((int64_t)1 << (31 - e)) - 1);
  if (x > thr) return QCC_INT32_MAX;
  if (x < -thr) return QCC_INT32_MIN;
  return (int32_t)((uint32_t)x << e);
}

/* 1 / (1 + a) for a in [0, 1), Q0.31 (gemmlowp one_over_one_plus_x_for_x_in_0_1). */
static int32_t one_over_one_plus_x(int32_t a) {
  int64_t s = (int64_t)a + QCC_INT32_MAX;
  int32_t half, x, i;
  s += s >= 0 ? 1 : -1;
  half = (int32_t)(s / 2);
  x = wrap_add(1515870810, srdhm(half, -1010580540));
  for (i = 0; i < 3; ++i) {
    const int32_t one_minus = wrap_sub(1 << 29, srdhm(half, x));
    x = wrap_add(x, srmpot(srdhm(x, one_minus), 2));
  }
  return srmpot(x, 1);
}

static void softmax_s8(const qcc_softmax_params *p, const int8_t *in, int8_t *out8, int16_t *out16) {
  const int32_t bits = out16 ? 16 : 8, lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
  int32_t r, i;
  for (r = 0; r < p->rows; ++r) {
    const int8_t *x = in + (size_t)r * (size_t)p->n;
    int32_t mx = -128, sum = 0, hpo, recip, exponent;
    for (i = 0; i < p->n; ++i)
      if (x[i] > mx) mx = x[i];
    for (i = 0; i < p->n; ++i) sum = wrap_add(sum, p->sum_table[mx - x[i]]);
    hpo = clz32((uint32_t)sum);
    recip = one_over_one_plus_x((int32_t)(((uint32_t)sum << hpo) - 0x80000000u));
    exponent = 12 - hpo + 31 - bits;
    for (i = 0; i < p->n; ++i) {
      const int32_t y = clamp(rdbpot(srdhm(recip, p->exp_table[mx - x[i]]), exponent) + lo, lo, hi);
      if (out16) out16[(size_t)r * (size_t)p->n + (size_t)i] = (int16_t)y;
      else out8[(size_t)r * (size_t)p->n + (size_t)i] = (int8_t)y;
    }
  }
}

void qcc_softmax_s8(const qcc_softmax_params *p, const int8_t *in, int8_t *out) { softmax_s8(p, in, out, NULL); }
void qcc_softmax_s8_s16(const qcc_softmax_params *p, const int8_t *in, int16_t *out) {
  softmax_s8(p, in, NULL, out);
}

static int32_t lut_lookup(int32_t v, const int16_t *lut) { /* LUTLookup(int16) */
  const int32_t index = 256 + (v >> 7), base = lut[index];
  const int32_t delta = ((lut[index + 1] - base) * (v & 0x7F) + 64) >> 7;
  return (int16_t)(base + delta);
}

void qcc_softmax_s16(const qcc_softmax16_params *p, const int16_t *in, int16_t *out) {
  int32_t r, i;
  for (r = 0; r < p->rows; ++r) {
    const int16_t *x = in + (size_t)r * (size_t)p->n;
    int32_t mx = -32768, total = 0, hpo, shifted, recip, right;
    for (i = 0; i < p->n; ++i)
      if (x[i] > mx) mx = x[i];
    for (i = 0; i < p->n; ++i)
      total += lut_lookup(clamp(mbqm(x[i] - mx, p->mult, p->shift) + 32767, -32768, 32767), p->exp_lut);
    hpo = clz32((uint32_t)total);
    shifted = (int32_t)((((int64_t)total << (hpo - 1)) + (1 << 13)) >> 14);
    recip = lut_lookup(clamp(shifted - ((1 << 15) + (1 << 16)), -32768, 32767), p->recip_lut);
    right = 31 - hpo;
    for (i = 0; i < p->n; ++i) {
      const int32_t e = lut_lookup(clamp(mbqm(x[i] - mx, p->mult, p->shift) + 32767, -32768, 32767), p->exp_lut);
      const int64_t y = ((int64_t)e * recip + ((int64_t)1 << (right - 1))) >> right;
      out[(size_t)r * (size_t)p->n + (size_t)i] = (int16_t)(y < 0 ? 0 : (y > 32767 ? 32767 : y));
    }
  }
}

/* ---- resize, data movement ------------------------------------------------------------ */

void qcc_resize(const qcc_resize_params *p, const int8_t *in, int8_t *out) {
  const int32_t c = p->channels;
  int32_t b, oy, ox, k;
  for (b = 0; b < p->batch; ++b) {
    const int8_t *img = in + (size_t)b * (size_t)(p->in_h * p->in_w * c);
    for (oy = 0; oy < p->out_h; ++oy) {
      const int8_t *r0 = img + (size_t)(p->y_lo[oy] * p->in_w * c), *r1 = img + (size_t)(p->y_hi[oy] * p->in_w * c);
      const int32_t dy = p->y_frac[oy];
      for (ox = 0; ox < p->out_w; ++ox) {
        const int32_t x0 = p->x_lo[ox] * c, x1 = p->x_hi[ox] * c, dx = p->x_frac[ox];
        for (k = 0; k < c; ++k) {
          int32_t acc;
          if (!p->bilinear) {
            *out++ = r0[x0 + k];
            continue;
          }
          acc = r0[x0 + k] * (1024 - dy) * (1024 - dx) + r1[x0 + k] * dy * (1024 - dx) +
                r0[x1 + k] * (1024 - dy) * dx + r1[x1 + k] * dy * dx;
          acc = acc > 0 ? acc + (1 << 19) : acc - (1 << 19);
          *out++ = (int8_t)(acc / (1 << 20));
        }
      }
    }
  }
}

void qcc_resize_nearest_s16(const qcc_resize_params *p, const int16_t *in, int16_t *out) {
  const int32_t c = p->channels;
  int32_t b, oy, ox, k;
  for (b = 0; b < p->batch; ++b) {
    const int16_t *img = in + (size_t)b * (size_t)(p->in_h * p->in_w * c);
    for (oy = 0; oy < p->out_h; ++oy) {
      const int16_t *row = img + (size_t)(p->y_lo[oy] * p->in_w * c);
      for (ox = 0; ox < p->out_w; ++ox)
        for (k = 0; k < c; ++k) *out++ = row[p->x_lo[ox] * c + k];
    }
  }
}

void qcc_copy(const qcc_copy_params *p, const void *src, void *dst) {
  const int32_t r = p->rank, n = p->dims[r - 1];
  const int32_t ss = p->src_strides[r - 1], ds = p->dst_strides[r - 1];
  int32_t idx[QCC_MAX_RANK] = {0};
  int32_t outer = 1, so = p->src_offset, d = p->dst_offset, t, i, k;
  for (k = 0; k < r - 1; ++k) outer *= p->dims[k];
  for (t = 0; t < outer; ++t) {
    if (p->elem_bytes == 2) {
      const int16_t *s16 = (const int16_t *)src;
      int16_t *d16 = (int16_t *)dst;
      for (i = 0; i < n; ++i) d16[d + i * ds] = s16[so + i * ss];
    } else {
      const int8_t *s8 = (const int8_t *)src;
      int8_t *d8 = (int8_t *)dst;
      for (i = 0; i < n; ++i) d8[d + i * ds] = s8[so + i * ss];
    }
    for (k = r - 2; k >= 0; --k) {
      so += p->src_strides[k];
      d += p->dst_strides[k];
      if (++idx[k] < p->dims[k]) break;
      so -= p->src_strides[k] * p->dims[k];
      d -= p->dst_strides[k] * p->dims[k];
      idx[k] = 0;
    }
  }
}

void qcc_fill(const qcc_fill_params *p, void *dst) {
  int32_t i;
  if (p->elem_bytes == 2) {
    int16_t *d16 = (int16_t *)dst;
    for (i = 0; i < p->count; ++i) d16[i] = (int16_t)p->value;
  } else {
    int8_t *d8 = (int8_t *)dst;
    for (i = 0; i < p->count; ++i) d8[i] = (int8_t)p->value;
  }
}
