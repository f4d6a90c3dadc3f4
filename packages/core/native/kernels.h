// owlet native CPU kernels: shared declarations. See ../src/cpu/README.md for the weight layouts
// and the numerics every engine (this add-on, the WASM kernels) implements identically.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace owlet {

/** Rows per weight group: every engine stores Linear weights as groups of 16 output rows. */
constexpr int G = 16;
constexpr int QK = 32;

enum DType : int { F32 = 0, F16 = 1, Q8 = 2, Q4 = 3 };

/** Bytes of one 16-row group of a weight with `k` inputs. */
inline size_t group_bytes(int dtype, int k) {
  switch (dtype) {
    case F32: return 64ull * (size_t)k;
    case F16: return 32ull * (size_t)k;
    case Q8: return (size_t)(k / QK) * 544;
    case Q4: return (size_t)(k / QK) * 288;
  }
  return 0;
}

/** int16 activations: per row i and block b, qs[i·k + 32b …] (32 values), qd[i·nb + b] (scale), sx[i·nb + b] (Σ q). */
struct QAct {
  const int16_t* qs;
  const float* qd;
  const int32_t* sx;
};

/** Arguments of one attention call (see attention in kernels_generic.inc). */
struct AttnArgs {
  const float* q;  // [B, H, Lq, D]
  float* out;      // [B, H, Lq, D]
  int B, H, Hkv, Lq, D;
  int nseg;
  const float* const* k;  // per segment [B, Hkv, len_s, D]
  const float* const* v;
  const int* len;
  int Lk;
  int causal;
  float scale;
  const float* mask;  // additive, element (b, h, i, j) at b·ms0 + h·ms1 + i·ms2 + j; null: none
  int64_t ms0, ms1, ms2;
};

struct Kernels {
  const char* name;
  /** y[i·ldy + 16g + r] for i in [i0, i1), groups [g0, g1) (rows ≥ out are not stored). */
  void (*gemm_f32)(const uint8_t* w, const float* x, int i0, int i1, int k, float* y, int ldy, int out, int g0,
                   int g1, const float* bias);
  void (*gemm_f16)(const uint8_t* w, const float* x, int i0, int i1, int k, float* y, int ldy, int out, int g0,
                   int g1, const float* bias);
  void (*gemm_q8)(const uint8_t* w, QAct a, int i0, int i1, int k, float* y, int ldy, int out, int g0, int g1,
                  const float* bias);
  void (*gemm_q4)(const uint8_t* w, QAct a, int i0, int i1, int k, float* y, int ldy, int out, int g0, int g1,
                  const float* bias);
  /** Quantizes rows [i0, i1) of x [n, k] to int16 blocks. */
  void (*quant_act)(const float* x, int i0, int i1, int k, int16_t* qs, float* qd, int32_t* sx);
  void (*rms_norm)(const float* x, const float* w, float* y, int r0, int r1, int d, float eps);
  void (*layer_norm)(const float* x, const float* w, const float* b, float* y, int r0, int r1, int d, float eps);
  void (*swiglu)(const float* g, const float* u, float* y, size_t i0, size_t i1);
  void (*gelu)(const float* x, float* y, size_t i0, size_t i1);
  void (*quick_gelu)(const float* x, float* y, size_t i0, size_t i1);
  /** Rows [r0, r1) of x viewed as [B·H·L, D]; cos/sin [Bc, L, D] (Bc = 1 or B). */
  void (*rope)(const float* x, const float* cos, const float* sin, float* y, int r0, int r1, int H, int L, int D,
               int Bc);
  /** One (b, h) pair of an attention call; `scratch` holds at least attention_scratch(a) floats. */
  void (*attention)(const AttnArgs& a, int bh, float* scratch);
};

/** Floats of scratch one attention task needs. */
inline size_t attention_scratch(const AttnArgs& a) {
  const int KB = 64;
  return (size_t)a.D * KB + (size_t)KB + (size_t)a.Lq * (a.D + 2) + 64;
}

const Kernels* kernels_scalar();
const Kernels* kernels_avx2();    // null when not compiled in
const Kernels* kernels_avx512();  // null when not compiled in

}  // namespace owlet
