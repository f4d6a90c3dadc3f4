// AVX2 + FMA + F16C kernels (x86-64 since 2013). Compiled with those flags and only called after
// the CPU reported them (addon.cc). Same layouts and numerics as kernels_generic.inc: the q8 / q4
// products are bit-identical to it (exact int32 block sums from vpmaddwd, the float32 steps in the
// same order); the fp32 / fp16 products fuse the multiply-add.
#include <immintrin.h>

#include "kernels.h"

namespace owlet {
namespace avx2_impl {
#include "kernels_generic.inc"

static inline int32_t load_i32(const int16_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

/** Stores 16 outputs of group g (two halves of 8), masking rows ≥ out. */
static inline void store16(float* y, int ldy, int i, int g, int out, __m256 lo, __m256 hi, const float* bias) {
  float* yr = y + (size_t)i * ldy + (size_t)g * G;
  const int rows = out - g * G < G ? out - g * G : G;
  if (rows == G) {
    if (bias) {
      lo = _mm256_add_ps(lo, _mm256_loadu_ps(bias + (size_t)g * G));
      hi = _mm256_add_ps(hi, _mm256_loadu_ps(bias + (size_t)g * G + 8));
    }
    _mm256_storeu_ps(yr, lo);
    _mm256_storeu_ps(yr + 8, hi);
    return;
  }
  alignas(32) float t[G];
  _mm256_store_ps(t, lo);
  _mm256_store_ps(t + 8, hi);
  for (int r = 0; r < rows; r++) yr[r] = bias ? t[r] + bias[g * G + r] : t[r];
}

static inline __m256i madd2(__m256i acc, __m256i a, __m256i xa, __m256i b, __m256i xb) {
  return _mm256_add_epi32(acc, _mm256_add_epi32(_mm256_madd_epi16(a, xa), _mm256_madd_epi16(b, xb)));
}

// ---------------------------------------------------------------------------------------------
// q4 (layout: see kernels_avx512.cc)

template <int C>
static inline void q4_tile(const uint8_t* wg, int nb, QAct a, int i, int k, float* y, int ldy, int g, int out,
                           const float* bias) {
  __m256 flo[C], fhi[C];
  const int16_t* xq[C];
  for (int c = 0; c < C; c++) {
    flo[c] = fhi[c] = _mm256_setzero_ps();
    xq[c] = a.qs + (size_t)(i + c) * k;
  }
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  for (int b = 0; b < nb; b++) {
    const uint8_t* wb = wg + (size_t)b * 288;
    __m256i alo[C], ahi[C];
    for (int c = 0; c < C; c++) alo[c] = ahi[c] = _mm256_setzero_si256();
    for (int t = 0; t < 8; t++) {
      const __m256i raw = _mm256_loadu_si256((const __m256i*)(wb + 32 + 32 * t));
      const __m256i lo = _mm256_and_si256(raw, m4);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
      const __m256i l0 = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(lo));       // rows 0-7, pair t
      const __m256i l1 = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(lo, 1));  // rows 8-15
      const __m256i h0 = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(hi));       // rows 0-7, pair t+8
      const __m256i h1 = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(hi, 1));
      for (int c = 0; c < C; c++) {
        const int16_t* xp = xq[c] + (size_t)b * QK;
        const __m256i xa = _mm256_set1_epi32(load_i32(xp + 2 * t));
        const __m256i xb = _mm256_set1_epi32(load_i32(xp + 16 + 2 * t));
        alo[c] = madd2(alo[c], l0, xa, h0, xb);
        ahi[c] = madd2(ahi[c], l1, xa, h1, xb);
      }
    }
    const __m256 d0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)wb));
    const __m256 d1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(wb + 16)));
    for (int c = 0; c < C; c++) {
      const size_t o = (size_t)(i + c) * nb + b;
      const __m256i s8 = _mm256_set1_epi32(8 * a.sx[o]);
      const __m256 dx = _mm256_set1_ps(a.qd[o]);
      flo[c] = _mm256_add_ps(flo[c], _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(alo[c], s8)),
                                                   _mm256_mul_ps(d0, dx)));
      fhi[c] = _mm256_add_ps(fhi[c], _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(ahi[c], s8)),
                                                   _mm256_mul_ps(d1, dx)));
    }
  }
  for (int c = 0; c < C; c++) store16(y, ldy, i + c, g, out, flo[c], fhi[c], bias);
}

static void gemm_q4(const uint8_t* w, QAct a, int i0, int i1, int k, float* y, int ldy, int out, int g0, int g1,
                    const float* bias) {
  const int nb = k / QK;
  for (int g = g0; g < g1; g++) {
    const uint8_t* wg = w + group_bytes(Q4, k) * g;
    int i = i0;
    for (; i + 4 <= i1; i += 4) q4_tile<4>(wg, nb, a, i, k, y, ldy, g, out, bias);
    if (i + 2 <= i1) {
      q4_tile<2>(wg, nb, a, i, k, y, ldy, g, out, bias);
      i += 2;
    }
    if (i < i1) q4_tile<1>(wg, nb, a, i, k, y, ldy, g, out, bias);
  }
}

// ---------------------------------------------------------------------------------------------
// q8

template <int C>
static inline void q8_tile(const uint8_t* wg, int nb, QAct a, int i, int k, float* y, int ldy, int g, int out,
                           const float* bias) {
  __m256 flo[C], fhi[C];
  const int16_t* xq[C];
  for (int c = 0; c < C; c++) {
    flo[c] = fhi[c] = _mm256_setzero_ps();
    xq[c] = a.qs + (size_t)(i + c) * k;
  }
  for (int b = 0; b < nb; b++) {
    const uint8_t* wb = wg + (size_t)b * 544;
    __m256i alo[C], ahi[C];
    for (int c = 0; c < C; c++) alo[c] = ahi[c] = _mm256_setzero_si256();
    for (int m = 0; m < 16; m += 2) {
      const uint8_t* p = wb + 32 + 32 * m;
      const __m256i a0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)p));         // pair m, rows 0-7
      const __m256i a1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)(p + 16)));  // rows 8-15
      const __m256i b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)(p + 32)));  // pair m+1
      const __m256i b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)(p + 48)));
      for (int c = 0; c < C; c++) {
        const int16_t* xp = xq[c] + (size_t)b * QK;
        const __m256i xa = _mm256_set1_epi32(load_i32(xp + 2 * m));
        const __m256i xb = _mm256_set1_epi32(load_i32(xp + 2 * m + 2));
        alo[c] = madd2(alo[c], a0, xa, b0, xb);
        ahi[c] = madd2(ahi[c], a1, xa, b1, xb);
      }
    }
    const __m256 d0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)wb));
    const __m256 d1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(wb + 16)));
    for (int c = 0; c < C; c++) {
      const size_t o = (size_t)(i + c) * nb + b;
      const __m256 dx = _mm256_set1_ps(a.qd[o]);
      flo[c] = _mm256_add_ps(flo[c], _mm256_mul_ps(_mm256_cvtepi32_ps(alo[c]), _mm256_mul_ps(d0, dx)));
      fhi[c] = _mm256_add_ps(fhi[c], _mm256_mul_ps(_mm256_cvtepi32_ps(ahi[c]), _mm256_mul_ps(d1, dx)));
    }
  }
  for (int c = 0; c < C; c++) store16(y, ldy, i + c, g, out, flo[c], fhi[c], bias);
}

static void gemm_q8(const uint8_t* w, QAct a, int i0, int i1, int k, float* y, int ldy, int out, int g0, int g1,
                    const float* bias) {
  const int nb = k / QK;
  for (int g = g0; g < g1; g++) {
    const uint8_t* wg = w + group_bytes(Q8, k) * g;
    int i = i0;
    for (; i + 4 <= i1; i += 4) q8_tile<4>(wg, nb, a, i, k, y, ldy, g, out, bias);
    if (i + 2 <= i1) {
      q8_tile<2>(wg, nb, a, i, k, y, ldy, g, out, bias);
      i += 2;
    }
    if (i < i1) q8_tile<1>(wg, nb, a, i, k, y, ldy, g, out, bias);
  }
}

// ---------------------------------------------------------------------------------------------
// fp32 / fp16 panels: C activation rows × one group (two ymm halves)

template <int C, bool HALF>
static inline void f_tile(const uint8_t* wg, const float* x, int i, int k, float* y, int ldy, int g, int out,
                          const float* bias) {
  __m256 lo[C], hi[C];
  for (int c = 0; c < C; c++) lo[c] = hi[c] = _mm256_setzero_ps();
  const float* xr = x + (size_t)i * k;
  for (int j = 0; j < k; j++) {
    __m256 w0, w1;
    if (HALF) {
      const __m128i* p = (const __m128i*)(wg + (size_t)j * 32);
      w0 = _mm256_cvtph_ps(_mm_loadu_si128(p));
      w1 = _mm256_cvtph_ps(_mm_loadu_si128(p + 1));
    } else {
      const float* p = (const float*)(wg + (size_t)j * 64);
      w0 = _mm256_loadu_ps(p);
      w1 = _mm256_loadu_ps(p + 8);
    }
    for (int c = 0; c < C; c++) {
      const __m256 xv = _mm256_broadcast_ss(xr + (size_t)c * k + j);
      lo[c] = _mm256_fmadd_ps(w0, xv, lo[c]);
      hi[c] = _mm256_fmadd_ps(w1, xv, hi[c]);
    }
  }
  for (int c = 0; c < C; c++) store16(y, ldy, i + c, g, out, lo[c], hi[c], bias);
}

template <bool HALF>
static void gemm_f(const uint8_t* w, const float* x, int i0, int i1, int k, float* y, int ldy, int out, int g0,
                   int g1, const float* bias) {
  const size_t gb = group_bytes(HALF ? F16 : F32, k);
  for (int g = g0; g < g1; g++) {
    const uint8_t* wg = w + gb * g;
    int i = i0;
    for (; i + 6 <= i1; i += 6) f_tile<6, HALF>(wg, x, i, k, y, ldy, g, out, bias);
    for (; i + 2 <= i1; i += 2) f_tile<2, HALF>(wg, x, i, k, y, ldy, g, out, bias);
    if (i < i1) f_tile<1, HALF>(wg, x, i, k, y, ldy, g, out, bias);
  }
}

// ---------------------------------------------------------------------------------------------
// int16 activations (bit-identical to quant_act_gen)

static void quant_act(const float* x, int i0, int i1, int k, int16_t* qs, float* qd, int32_t* sx) {
  const int nb = k / QK;
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int i = i0; i < i1; i++) {
    for (int b = 0; b < nb; b++) {
      const float* p = x + (size_t)i * k + (size_t)b * QK;
      __m256 v[4];
      for (int t = 0; t < 4; t++) v[t] = _mm256_loadu_ps(p + 8 * t);
      __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v[0], absmask), _mm256_and_ps(v[1], absmask)),
                               _mm256_max_ps(_mm256_and_ps(v[2], absmask), _mm256_and_ps(v[3], absmask)));
      __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
      m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
      m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
      const float amax = _mm_cvtss_f32(m4);
      const float d = amax / 32767.0f;
      const float id = d != 0 ? 1.0f / d : 0.0f;
      const __m256 vid = _mm256_set1_ps(id);
      int16_t* q = qs + (size_t)i * k + (size_t)b * QK;
      __m256i sum = _mm256_setzero_si256();
      for (int t = 0; t < 4; t += 2) {
        const __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(v[t], vid));
        const __m256i c = _mm256_cvtps_epi32(_mm256_mul_ps(v[t + 1], vid));
        // packs works per 128-bit lane: fix the order with a permute
        const __m256i pk = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, c), 0xd8);
        _mm256_storeu_si256((__m256i*)(q + 8 * t), pk);
        sum = _mm256_add_epi32(sum, _mm256_madd_epi16(pk, _mm256_set1_epi16(1)));
      }
      __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
      qd[(size_t)i * nb + b] = d;
      sx[(size_t)i * nb + b] = _mm_cvtsi128_si32(s4);
    }
  }
}

}  // namespace avx2_impl

const Kernels* kernels_avx2() {
  using namespace avx2_impl;
  static const Kernels k = {"avx2",         gemm_f<false>, gemm_f<true>,   gemm_q8,    gemm_q4,
                            quant_act,      rms_norm_gen,  layer_norm_gen, swiglu_gen, gelu_gen,
                            quick_gelu_gen, rope_gen,      attention_gen};
  return &k;
}

}  // namespace owlet
