/**
 * @owlet/trainer — training for owlet models on TensorFlow.js autograd.
 *
 * Generic (depends on @owlet/core only): `Trainer`, `AdamW`, schedules, parameter groups by key
 * pattern, gradient clipping, seeded data order, crash-safe checkpoints, Hugging Face export.
 * mPLUG-Owl specific: the recipes (data) and the data pipeline (`./owl/*`: LLaVA JSON, v1 jsonl,
 * templates and label masks through @owlet/tokenizer, images through @owlet/vision-encoder).
 */
export { TrainerErrorCode } from './errors.js';
export {
  resolveTrainingArguments,
  warmupSteps,
  DEFAULT_TRAINING_ARGUMENTS,
  type TrainingArguments,
} from './args.js';
export {
  checkTrainingBackend,
  trainingBackendReport,
  TRAINING_KERNELS,
  type TrainingBackendReport,
} from './backend.js';
export { lrLambda, LR_SCHEDULER_TYPES, type LrSchedulerType, type ScheduleOptions } from './optim/schedule.js';
export {
  AdamW,
  clipGradNorm,
  type AdamWGroupOptions,
  type AdamWParamGroup,
  type AdamWStateDict,
  type ClipResult,
} from './optim/AdamW.js';
export {
  applyTrainable,
  buildParamGroups,
  countLayers,
  hfDecays,
  keyMatcher,
  layerNormKeys,
  layerwiseScale,
  matchesAny,
  trainableParameters,
  type GroupingOptions,
  type KeyPattern,
  type LayerwiseLrDecay,
  type ParamGroupSpec,
} from './params.js';
export {
  BatchSampler,
  collateCausalLm,
  epochPermutation,
  inMemoryDataset,
  mixSeed,
  mulberry32,
  type CausalLmBatch,
  type CausalLmSample,
  type DataPosition,
  type Dataset,
} from './data/dataset.js';
export {
  RECIPES,
  RECIPE_NAMES,
  checkRecipeFits,
  resolveRecipe,
  type Recipe,
  type RecipeName,
  type RecipeOptions,
} from './recipes.js';
export {
  Trainer,
  type LogEntry,
  type LossOutput,
  type StepResult,
  type TrainerOptions,
  type TrainerState,
  type TrainingBatch,
  type TrainOptions,
  type TrainOutput,
} from './Trainer.js';
export {
  LoraLinear,
  injectLora,
  mergeLora,
  unmergeLora,
  removeLora,
  loraModules,
  loadPeftAdapter,
  savePeftAdapter,
  type LoraConfig,
} from '@owlet/core';
export {
  exportPretrained,
  latestCheckpoint,
  listCheckpoints,
  checkCheckpointFolder,
  sweepStaleCheckpoints,
  type CheckpointFs,
  type FileHandleLike,
  type FolderCheck,
  type CompletionMarker,
  type ManifestEntry,
  type ExportOptions,
  type ExportResult,
} from './node-api.js';
export {
  MplugOwl2Dataset,
  MplugOwlV1Dataset,
  loadOwlTrainingData,
  parseLlavaJson,
  parseOwlV1Jsonl,
  type ImageLoader,
  type LlavaRecord,
  type OwlDatasetOptions,
  type OwlV1Record,
} from './owl/data.js';
