export { spliceOwl2, spliceOwl1, type SplicedSequence, type EmbedFn } from './splice.js';
export {
  prepareTrainingInputsOwl2,
  prepareTrainingInputsOwl1,
  checkTrainingBatch,
  type TrainingBatch,
  type PreparedTrainingInputs,
} from './training-inputs.js';
export {
  resolveMplugOwlModelConfig,
  detectModelType,
  type MplugOwlModelConfig,
  type MplugOwlModelType,
} from './config.js';
export { MplugOwlPreTrainedModel } from './MplugOwlPreTrainedModel.js';
export type { MplugOwlForwardInputs, MplugOwlForwardOutput, MplugOwlGenerateOptions } from './inputs.js';
export {
  ChatSession,
  pixelDigest,
  type ChatHost,
  type ChatModel,
  type ChatOptions,
  type ChatResult,
  type ChatStream,
  type ChatUsage,
} from './chat.js';
export type { GenerationDefaults } from './generation-defaults.js';
export { MPLUGOwl2LlamaModel } from './MPLUGOwl2LlamaModel.js';
export { MPLUGOwl2LlamaForCausalLM } from './MPLUGOwl2LlamaForCausalLM.js';
export { MplugOwlForConditionalGeneration } from './MplugOwlForConditionalGeneration.js';
export {
  fromPretrained,
  applyGenerationConfig,
  weightDTypeReport,
  type FromPretrainedOptions,
  type MplugOwlModel,
  type LoadProgress,
} from './pretrained.js';
export { planMemory, type MemoryPlan, type MemoryPlanOptions, type MemoryPlanPart } from './plan.js';
