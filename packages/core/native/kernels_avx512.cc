// AVX-512 (F, BW, VL, VNNI) + F16C + FMA kernels. Compiled with those flags and only called after
// the CPU reported them (addon.cc). Same layouts and numerics as kernels_generic.inc: the q8 / q4
// products are bit-identical to it (exact int32 block sums from vpdpwssd, then the float32 steps
// in the same order); the fp32 / fp16 products fuse the multiply-add.
#include <immintrin.h>

#include "kernels.h"

namespace owlet {
namespace avx512_impl {
#include "kernels_generic.inc"

static inline __mmask16 row_mask(int g, int out) {
  const int rows = out - g * G < G ? out - g * G : G;
  return (__mmask16)((1u << rows) - 1u);
}

static inline void store16(float* y, int ldy, int i, int g, int out, __m512 v, const float* bias) {
  const __mmask16 m = row_mask(g, out);
  if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias + (size_t)g * G));
  _mm512_mask_storeu_ps(y + (size_t)i * ldy + (size_t)g * G, m, v);
}

static inline int32_t load_i32(const int16_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// ---------------------------------------------------------------------------------------------
// q4: per chunk t the 32 bytes hold, for rows r = 0…15, bytes 2t, 2t+1 of the row's GGUF block:
// low nibbles = elements 2t, 2t+1, high nibbles = elements 16+2t, 17+2t.

template <int C>
static inline void q4_tile(const uint8_t* wg, int nb, QAct a, int i, int k, float* y, int ldy, int g, int out,
                           const float* bias) {
  __m512 facc[C];
  const int16_t* xq[C];
  for (int c = 0; c < C; c++) {
    facc[c] = _mm512_setzero_ps();
    xq[c] = a.qs + (size_t)(i + c) * k;
  }
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  for (int b = 0; b < nb; b++) {
    const uint8_t* wb = wg + (size_t)b * 288;
    __m512i acc[C], acc2[C];
    for (int c = 0; c < C; c++) acc[c] = acc2[c] = _mm512_setzero_si512();
    for (int t = 0; t < 8; t++) {
      const __m256i raw = _mm256_loadu_si256((const __m256i*)(wb + 32 + 32 * t));
      const __m512i lo = _mm512_cvtepu8_epi16(_mm256_and_si256(raw, m4));
      const __m512i hi = _mm512_cvtepu8_epi16(_mm256_and_si256(_mm256_srli_epi16(raw, 4), m4));
      for (int c = 0; c < C; c++) {
        const int16_t* xp = xq[c] + (size_t)b * QK;
        acc[c] = _mm512_dpwssd_epi32(acc[c], lo, _mm512_set1_epi32(load_i32(xp + 2 * t)));
        acc2[c] = _mm512_dpwssd_epi32(acc2[c], hi, _mm512_set1_epi32(load_i32(xp + 16 + 2 * t)));
      }
    }
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)wb));
    for (int c = 0; c < C; c++) {
      const size_t o = (size_t)(i + c) * nb + b;
      const __m512i s = _mm512_sub_epi32(_mm512_add_epi32(acc[c], acc2[c]), _mm512_set1_epi32(8 * a.sx[o]));
      const __m512 sc = _mm512_mul_ps(dw, _mm512_set1_ps(a.qd[o]));
      facc[c] = _mm512_add_ps(facc[c], _mm512_mul_ps(_mm512_cvtepi32_ps(s), sc));
    }
  }
  for (int c = 0; c < C; c++) store16(y, ldy, i + c, g, out, facc[c], bias);
}

static void gemm_q4(const uint8_t* w, QAct a, int i0, int i1, int k, float* y, int ldy, int out, int g0, int g1,
                    const float* bias) {
  const int nb = k / QK;
  for (int g = g0; g < g1; g++) {
    const uint8_t* wg = w + group_bytes(Q4, k) * g;
    int i = i0;
    for (; i + 8 <= i1; i += 8) q4_tile<8>(wg, nb, a, i, k, y, ldy, g, out, bias);
    if (i + 4 <= i1) {
      q4_tile<4>(wg, nb, a, i, k, y, ldy, g, out, bias);
      i += 4;
    }
    if (i + 2 <= i1) {
      q4_tile<2>(wg, nb, a, i, k, y, ldy, g, out, bias);
      i += 2;
    }
    if (i < i1) q4_tile<1>(wg, nb, a, i, k, y, ldy, g, out, bias);
  }
}

// ---------------------------------------------------------------------------------------------
// q8: per pair m the 32 bytes hold, for rows r = 0…15, elements 2m, 2m+1 of the row's block.

template <int C>
static inline void q8_tile(const uint8_t* wg, int nb, QAct a, int i, int k, float* y, int ldy, int g, int out,
                           const float* bias) {
  __m512 facc[C];
  const int16_t* xq[C];
  for (int c = 0; c < C; c++) {
    facc[c] = _mm512_setzero_ps();
    xq[c] = a.qs + (size_t)(i + c) * k;
  }
  for (int b = 0; b < nb; b++) {
    const uint8_t* wb = wg + (size_t)b * 544;
    __m512i acc[C], acc2[C];
    for (int c = 0; c < C; c++) acc[c] = acc2[c] = _mm512_setzero_si512();
    for (int m = 0; m < 16; m += 2) {
      const __m512i w0 = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i*)(wb + 32 + 32 * m)));
      const __m512i w1 = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i*)(wb + 64 + 32 * m)));
      for (int c = 0; c < C; c++) {
        const int16_t* xp = xq[c] + (size_t)b * QK;
        acc[c] = _mm512_dpwssd_epi32(acc[c], w0, _mm512_set1_epi32(load_i32(xp + 2 * m)));
        acc2[c] = _mm512_dpwssd_epi32(acc2[c], w1, _mm512_set1_epi32(load_i32(xp + 2 * m + 2)));
      }
    }
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)wb));
    for (int c = 0; c < C; c++) {
      const size_t o = (size_t)(i + c) * nb + b;
      const __m512i s = _mm512_add_epi32(acc[c], acc2[c]);
      const __m512 sc = _mm512_mul_ps(dw, _mm512_set1_ps(a.qd[o]));
      facc[c] = _mm512_add_ps(facc[c], _mm512_mul_ps(_mm512_cvtepi32_ps(s), sc));
    }
  }
  for (int c = 0; c < C; c++) store16(y, ldy, i + c, g, out, facc[c], bias);
}

static void gemm_q8(const uint8_t* w, QAct a, int i0, int i1, int k, float* y, int ldy, int out, int g0, int g1,
                    const float* bias) {
  const int nb = k / QK;
  for (int g = g0; g < g1; g++) {
    const uint8_t* wg = w + group_bytes(Q8, k) * g;
    int i = i0;
    for (; i + 8 <= i1; i += 8) q8_tile<8>(wg, nb, a, i, k, y, ldy, g, out, bias);
    if (i + 4 <= i1) {
      q8_tile<4>(wg, nb, a, i, k, y, ldy, g, out, bias);
      i += 4;
    }
    if (i + 2 <= i1) {
      q8_tile<2>(wg, nb, a, i, k, y, ldy, g, out, bias);
      i += 2;
    }
    if (i < i1) q8_tile<1>(wg, nb, a, i, k, y, ldy, g, out, bias);
  }
}

// ---------------------------------------------------------------------------------------------
// fp32 / fp16: panels [k][16 rows]; C activation rows × NG groups, one FMA chain per output.

template <int C, int NG, bool HALF>
static inline void f_tile(const uint8_t* w, const float* x, int i, int k, float* y, int ldy, int g, int out,
                          const float* bias) {
  __m512 acc[NG][C];
  for (int n = 0; n < NG; n++)
    for (int c = 0; c < C; c++) acc[n][c] = _mm512_setzero_ps();
  const size_t gb = group_bytes(HALF ? F16 : F32, k);
  const uint8_t* wp[NG];
  for (int n = 0; n < NG; n++) wp[n] = w + gb * (g + n);
  const float* xr = x + (size_t)i * k;
  for (int j = 0; j < k; j++) {
    __m512 wv[NG];
    for (int n = 0; n < NG; n++)
      wv[n] = HALF ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(wp[n] + (size_t)j * 32)))
                   : _mm512_loadu_ps((const float*)(wp[n] + (size_t)j * 64));
    for (int c = 0; c < C; c++) {
      const __m512 xv = _mm512_set1_ps(xr[(size_t)c * k + j]);
      for (int n = 0; n < NG; n++) acc[n][c] = _mm512_fmadd_ps(wv[n], xv, acc[n][c]);
    }
  }
  for (int n = 0; n < NG; n++)
    for (int c = 0; c < C; c++) store16(y, ldy, i + c, g + n, out, acc[n][c], bias);
}

template <int NG, bool HALF>
static inline void f_rows(const uint8_t* w, const float* x, int i0, int i1, int k, float* y, int ldy, int g, int out,
                          const float* bias) {
  int i = i0;
  for (; i + 8 <= i1; i += 8) f_tile<8, NG, HALF>(w, x, i, k, y, ldy, g, out, bias);
  if (i + 4 <= i1) {
    f_tile<4, NG, HALF>(w, x, i, k, y, ldy, g, out, bias);
    i += 4;
  }
  if (i + 2 <= i1) {
    f_tile<2, NG, HALF>(w, x, i, k, y, ldy, g, out, bias);
    i += 2;
  }
  if (i < i1) f_tile<1, NG, HALF>(w, x, i, k, y, ldy, g, out, bias);
}

template <bool HALF>
static void gemm_f(const uint8_t* w, const float* x, int i0, int i1, int k, float* y, int ldy, int out, int g0,
                   int g1, const float* bias) {
  int g = g0;
  if (i1 - i0 == 1) {
    for (; g + 4 <= g1; g += 4) f_tile<1, 4, HALF>(w, x, i0, k, y, ldy, g, out, bias);
  }
  for (; g + 2 <= g1; g += 2) f_rows<2, HALF>(w, x, i0, i1, k, y, ldy, g, out, bias);
  if (g < g1) f_rows<1, HALF>(w, x, i0, i1, k, y, ldy, g, out, bias);
}

// ---------------------------------------------------------------------------------------------
// int16 activations (bit-identical to quant_act_gen)

static void quant_act(const float* x, int i0, int i1, int k, int16_t* qs, float* qd, int32_t* sx) {
  const int nb = k / QK;
  const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  for (int i = i0; i < i1; i++) {
    for (int b = 0; b < nb; b++) {
      const float* p = x + (size_t)i * k + (size_t)b * QK;
      const __m512 v0 = _mm512_loadu_ps(p), v1 = _mm512_loadu_ps(p + 16);
      const __m512 m = _mm512_max_ps(_mm512_and_ps(v0, absmask), _mm512_and_ps(v1, absmask));
      const float amax = _mm512_reduce_max_ps(m);
      const float d = amax / 32767.0f;
      const float id = d != 0 ? 1.0f / d : 0.0f;
      const __m512 vid = _mm512_set1_ps(id);
      const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, vid));  // round half even (MXCSR default)
      const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, vid));
      int16_t* q = qs + (size_t)i * k + (size_t)b * QK;
      _mm256_storeu_si256((__m256i*)q, _mm512_cvtsepi32_epi16(q0));
      _mm256_storeu_si256((__m256i*)(q + 16), _mm512_cvtsepi32_epi16(q1));
      const __m512i s16 = _mm512_add_epi32(_mm512_cvtepi16_epi32(_mm512_cvtsepi32_epi16(q0)),
                                           _mm512_cvtepi16_epi32(_mm512_cvtsepi32_epi16(q1)));
      qd[(size_t)i * nb + b] = d;
      sx[(size_t)i * nb + b] = _mm512_reduce_add_epi32(s16);
    }
  }
}

}  // namespace avx512_impl

const Kernels* kernels_avx512() {
  using namespace avx512_impl;
  static const Kernels k = {"avx512",        gemm_f<false>, gemm_f<true>,   gemm_q8,    gemm_q4,
                            quant_act,       rms_norm_gen,  layer_norm_gen, swiglu_gen, gelu_gen,
                            quick_gelu_gen,  rope_gen,      attention_gen};
  return &k;
}

}  // namespace owlet
