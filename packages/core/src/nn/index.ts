export { Linear, type LinearOptions } from './Linear.js';
export { LayerNorm } from './LayerNorm.js';
export { RMSNorm } from './RMSNorm.js';
export { Embedding } from './Embedding.js';
export { LoraLinear, type LoraLinearOptions } from './LoraLinear.js';
export {
  PEFT_PREFIX,
  injectLora,
  isLoraTarget,
  loadPeftAdapterTensors,
  loraModules,
  mergeLora,
  peftAdapterConfigJson,
  peftAdapterTensors,
  peftKeys,
  removeLora,
  resolveLoraConfig,
  unmergeLora,
  type LoraConfig,
} from './lora.js';
