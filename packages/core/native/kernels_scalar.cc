// The portable kernels, compiled for the baseline instruction set (every CPU; the fallback when
// neither AVX2 nor AVX-512 is available, and the only set on non-x86 machines).
#include "kernels.h"

namespace owlet {
namespace scalar_impl {
#include "kernels_generic.inc"
}  // namespace scalar_impl

const Kernels* kernels_scalar() {
  using namespace scalar_impl;
  static const Kernels k = {"scalar",       gemm_f32_gen, gemm_f16_gen, gemm_q8_gen,  gemm_q4_gen,
                            quant_act_gen,  rms_norm_gen, layer_norm_gen, swiglu_gen, gelu_gen,
                            quick_gelu_gen, rope_gen,     attention_gen};
  return &k;
}

}  // namespace owlet
