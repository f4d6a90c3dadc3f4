import './gradients.js';

export { OwletError, ErrorCode, isOwletError, formatShape, type OwletErrorOptions } from './errors.js';
export {
  initBackend,
  getBackendInfo,
  getWebGPUDevice,
  getWebGPUDeviceLost,
  BACKEND_NAMES,
  type BackendName,
  type BackendRequest,
  type BackendInfo,
  type BackendAttempt,
  type InitBackendOptions,
  type WebGPUDeviceInfo,
} from './backend.js';
export {
  Parameter,
  Init,
  shapesEqual,
  linearWeightLayout,
  LINEAR_WEIGHT_LAYOUT,
  type ParameterInit,
  type ParameterOptions,
  type LinearWeightLayout,
} from './parameter.js';
export {
  Module,
  ModuleList,
  StateDictError,
  type StateDictInput,
  type StateDictReport,
  type LoadStateDictOptions,
  type ShapeMismatch,
  type WeightDTypeReport,
} from './module.js';
export * from './quant/index.js';
export {
  enableCpuEngine,
  disableCpuEngine,
  getCpuEngine,
  cpuEngineInfo,
  hardwareThreads,
  CPU_ENGINE_BACKENDS,
  CpuEngine,
  type CpuEngineInfo,
  type CpuEngineOptions,
} from './cpu/index.js';
export {
  enableWebGPUEngine,
  disableWebGPUEngine,
  webgpuEngineEnabled,
  webgpuEngineInfo,
  uploadWebGPUWeights,
  checkWebGPUDevice,
  webgpuDeviceLostError,
  webgpuLossError,
  gpuWeightBytes,
  planWeightChunks,
  chunkTensorBytes,
  rowsPerChunk,
  segmentsPerPass,
  GEMV_MAX_ROWS,
  GpuLinearWeight,
  type GpuChunkPlan,
  type WebGPUEngineOptions,
  type WebGPUEngineInfo,
  type WebGPUUploadReport,
  type UploadWebGPUWeightsOptions,
} from './webgpu/index.js';
export {
  planWeightMemory,
  DEFAULT_MAX_BINDING_BYTES,
  type WeightPlan,
  type WeightGroupPlan,
  type PlanWeightOptions,
} from './webgpu/plan.js';
export { scope, memoryStats } from './scope.js';
export {
  withTraining,
  isTraining,
  nextTrainingSeed,
  withCompositeOps,
  compositeOpsRequired,
  isGradientRecording,
} from './training.js';
export * from './ops/index.js';
export * from './nn/index.js';
export { loadCheckpointInto, type LoadCheckpointOptions } from './load-checkpoint.js';
export {
  configFields,
  checkConfigBounds,
  CONFIG_LIMITS,
  MAX_CONFIG_PARAMETERS,
  isConfigObject,
  showConfigValue,
  type ConfigJson,
  type ConfigFieldReaders,
} from './config-fields.js';
export {
  loadPeftAdapter,
  savePeftAdapter,
  ADAPTER_CONFIG_NAME,
  ADAPTER_SAFETENSORS_NAME,
  ADAPTER_BIN_NAME,
  type LoadPeftAdapterOptions,
} from './peft-adapter.js';
