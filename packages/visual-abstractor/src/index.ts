export {
  resolveMplugOwlVisualAbstractorConfig,
  abstractorImageTokens,
  MPLUG_OWL2_VISUAL_ABSTRACTOR_CONFIG,
  MPLUG_OWL_VISUAL_ABSTRACTOR_CONFIG,
  ABSTRACTOR_TORCH_LAYER_NORM_EPS,
  type MplugOwlVisualAbstractorConfig,
  type MplugOwlVisualAbstractorVariant,
  type ResolveVisualAbstractorOptions,
} from './config.js';
export { sincos1d, sincos2d } from './sincos.js';
export { MplugOwlVisualAbstractorMultiHeadAttention } from './MplugOwlVisualAbstractorMultiHeadAttention.js';
export { MplugOwlVisualAbstractorMLP } from './MplugOwlVisualAbstractorMLP.js';
export { MplugOwlVisualAbstractorCrossOutput } from './MplugOwlVisualAbstractorCrossOutput.js';
export { MplugOwlVisualAbstractorAttention } from './MplugOwlVisualAbstractorAttention.js';
export { MplugOwlVisualAbstractorLayer } from './MplugOwlVisualAbstractorLayer.js';
export { MplugOwlVisualAbstractorEncoder } from './MplugOwlVisualAbstractorEncoder.js';
export {
  MplugOwlVisualAbstractorModel,
  ABSTRACTOR_POSITION_BUFFER_KEYS,
  type MplugOwlVisualAbstractorForwardOptions,
  type MplugOwlVisualAbstractorOutput,
} from './MplugOwlVisualAbstractorModel.js';
