/**
 * @owlet/checkpoint — checkpoint I/O: safetensors (read, validate, write), sharded index files, PyTorch `.bin`
 * (zip + restricted unpickler), sources (bytes, Blob, URL, Node paths) and loading into a Module.
 * See README.md in this folder for formats, errors and sources.
 */
export { CheckpointError, CheckpointErrorCode, isCheckpointError } from './errors.js';
export {
  DTYPE_SIZE,
  SAFETENSORS_DTYPES,
  SAFETENSORS_FORMAT_DTYPE_BITS,
  isSafetensorsDType,
  isFloatDType,
  decodeToArray,
  f16BitsToF32,
  bf16BitsToF32,
  f32ToF16Bits,
  f32ToBf16Bits,
  type SafetensorsDType,
} from './dtypes.js';
export {
  SAFETENSORS_MAX_HEADER_SIZE,
  SAFETENSORS_MAX_DIM,
  FORBIDDEN_TENSOR_KEYS,
  SafetensorsArchive,
  readSafetensors,
  readHeaderLength,
  parseSafetensorsHeader,
  parseSafetensorsBytes,
  type TensorInfo,
  type SafetensorsEntry,
  type SafetensorsHeader,
} from './safetensors.js';
export {
  SAFETENSORS_INDEX_NAME,
  PYTORCH_INDEX_NAME,
  SAFETENSORS_SINGLE_NAME,
  PYTORCH_SINGLE_NAME,
  parseShardIndex,
  validateShardName,
  compareShardNames,
  type ShardIndex,
} from './sharded.js';
export {
  bytesSource,
  blobSource,
  blobFolder,
  openUrlSource,
  urlFolder,
  type ByteSource,
  type ByteSourceFolder,
  type UrlSourceOptions,
  type OpenOptions,
} from './sources.js';
export {
  fetchBounded,
  redirectAllowed,
  DEFAULT_MAX_DOWNLOAD_BYTES,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_READ_TIMEOUT_MS,
  type FetchLimits,
  type BoundedResponse,
} from './fetch.js';
export { ZipArchive, type ZipEntry } from './zip.js';
export { parsePlainJson, JsonSyntaxError, MAX_JSON_DEPTH } from './json.js';
export { unpickleStateDict, TORCH_STORAGE_DTYPES, type TorchTensorRef, type TorchStorageRef } from './pickle.js';
export { TorchBinFile } from './torch-bin.js';
export {
  writeSafetensors,
  safetensorsLayout,
  encodeTensorBytes,
  type TensorToWrite,
  type TensorValues,
  type SafetensorsTensorSpec,
  type SafetensorsLayout,
} from './writer.js';
export {
  Checkpoint,
  openCheckpoint,
  openCheckpointFolder,
  checkIndexAgainstShards,
  type CheckpointSource,
  type CheckpointEntry,
  type CheckpointFormat,
  type CheckpointProgress,
  type OpenCheckpointOptions,
  type ReadTensorsOptions,
} from './checkpoint.js';
export {
  convertBinToSafetensors,
  createSafetensorsFileWriter,
  writeSafetensorsFile,
  openFileSource,
  writeFolderAtomic,
  writeFileAtomic,
  sweepStaleTemporaries,
  type SafetensorsFileWriterLike,
  type ConvertOptions,
  type ConvertResult,
} from './node-api.js';
export type { AtomicFolderOptions } from './atomic-folder.js';
