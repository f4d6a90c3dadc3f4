export {
  resolveLlamaConfig,
  eosIds,
  MPLUG_OWL2_7B_LLAMA_CONFIG,
  MPLUG_OWL_7B_LLAMA_CONFIG,
  type LlamaConfig,
  type ResolveLlamaConfigOptions,
} from './config.js';
export {
  ModalityRouting,
  DEFAULT_MULTIWAY_STRATEGY,
  type MultiwayStrategy,
  type ModalityIndicatorsInput,
} from './ModalityRouting.js';
export { MultiwayNetwork, type MultiwayBranch } from './MultiwayNetwork.js';
export { LlamaMLP } from './LlamaMLP.js';
export { LlamaAttention, type LlamaLayerContext } from './LlamaAttention.js';
export { LlamaDecoderLayer } from './LlamaDecoderLayer.js';
export {
  LlamaModel,
  type LlamaModelInputs,
  type LlamaModelOutput,
  type LlamaModelOptions,
  type PreparedInputs,
} from './LlamaModel.js';
export { LlamaForCausalLM, type LlamaForCausalLMInputs, type CausalLMOutput } from './LlamaForCausalLM.js';
export { KVCache, type KVSegment, type KVCacheGrowth, type KVCacheOptions } from './KVCache.js';
export type { IdsInput } from './inputs.js';
export {
  generate,
  checkContextWindow,
  type GenerateOptions,
  type GenerateOutput,
  type Streamer,
  type CausalLM,
} from './generation/generate.js';
export {
  LogitsProcessorList,
  RepetitionPenaltyLogitsProcessor,
  MinNewTokensLengthLogitsProcessor,
  TemperatureLogitsWarper,
  TopKLogitsWarper,
  TopPLogitsWarper,
  argmax,
  sampleFromScores,
  softmax64,
  type LogitsProcessor,
} from './generation/logits-process.js';
export { StoppingCriteria, type FinishReason, type StopCheck, type StoppingOptions } from './generation/stopping.js';
export { SeededRandom } from './generation/random.js';
