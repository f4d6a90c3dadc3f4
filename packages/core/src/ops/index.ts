import '../gradients.js';

export { linear } from './linear.js';
export { matMul, EXPLICIT_TRANSPOSE_BACKENDS } from './matmul.js';
export { layerNorm, rmsNorm } from './norm.js';
export { embedding } from './embedding.js';
export { gatherRows } from './gather.js';
export { dropout } from './dropout.js';
export {
  IGNORE_INDEX,
  HOST_LOSS_BACKENDS,
  causalLmLoss,
  crossEntropySum,
  shiftedTargets,
  type CausalLmLoss,
  type ShiftedTargets,
} from './loss.js';
export { rope, ropeTables, applyRope, rotateHalf, ropeInvFreq, type RopeTables } from './rope.js';
export {
  attention,
  attentionOverSegments,
  causalMask,
  MASK_VALUE,
  type AttentionOptions,
  type KVSegment,
} from './attention.js';
export { swiglu, quickGelu, gelu, silu, softmax } from './activations.js';
export { splitHeads, mergeHeads } from './heads.js';
export {
  patchEmbed,
  resolvePatchConvImpl,
  PATCH_CONV_IMPL,
  type PatchConvImpl,
  type PatchEmbedOptions,
} from './patch-embed.js';
export {
  registerKernel,
  unregisterKernel,
  getKernels,
  setKernelsEnabled,
  kernelsEnabled,
  withoutKernels,
  gradientTapeActive,
  lastKernel,
  KERNEL_OPS,
  type KernelOp,
  type KernelArgs,
  type KernelSpec,
  type KernelResult,
} from './kernels.js';
