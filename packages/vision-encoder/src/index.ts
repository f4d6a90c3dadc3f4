export {
  resolveMplugOwlVisionConfig,
  mplugOwlVisionDims,
  MPLUG_OWL2_VISION_CONFIG,
  MPLUG_OWL_VISION_CONFIG,
  type MplugOwlVisionConfig,
  type MplugOwlVisionDims,
  type MplugOwlVisionVariant,
  type MplugOwlVisionActivation,
  type ResolveVisionConfigOptions,
} from './config.js';
export { PatchConv2d, PATCH_CONV_IMPL, type PatchConvImpl, type PatchConv2dOptions } from './PatchConv2d.js';
export { MplugOwlVisionEmbeddings, PATCH_EMBED_IN_CHANNELS } from './MplugOwlVisionEmbeddings.js';
export { MplugOwlVisionAttention } from './MplugOwlVisionAttention.js';
export { MplugOwlMLP } from './MplugOwlMLP.js';
export { MplugOwlVisionEncoderLayer } from './MplugOwlVisionEncoderLayer.js';
export {
  MplugOwlVisionEncoder,
  type MplugOwlVisionEncoderOptions,
  type MplugOwlVisionEncoderOutput,
} from './MplugOwlVisionEncoder.js';
export {
  MplugOwlVisionModel,
  type MplugOwlVisionModelOptions,
  type MplugOwlVisionModelOutput,
} from './MplugOwlVisionModel.js';
export * from './preprocess/index.js';
