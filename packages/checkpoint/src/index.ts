/**
 * @owlet/checkpoint — checkpoint I/O: safetensors (read, validate, write), sharded index files, PyTorch `.bin`
 * (zip + restricted unpickler), sources (bytes, Blob, URL, Node paths) and loading into a Module.
 * See README.md in this folder for formats, errors and sources.
 *
 * The public API is what users call: open / inspect / read (`openCheckpoint`, `readSafetensors`), write
 * (`writeSafetensors`, the Node file writers), convert (`convertBinToSafetensors`), the sources, the
 * typed errors and the option and result types. The parsers underneath (zip, pickle, header
 * validation) are internal; this package's tests import them from their source files.
 */
export { CheckpointError, CheckpointErrorCode, isCheckpointError } from './errors.js';

// open, inspect and stream any checkpoint (safetensors or .bin, single or sharded)
export {
  Checkpoint,
  openCheckpoint,
  openCheckpointFolder,
  type CheckpointSource,
  type CheckpointEntry,
  type CheckpointFormat,
  type CheckpointProgress,
  type OpenCheckpointOptions,
  type ReadTensorsOptions,
} from './checkpoint.js';
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
  DEFAULT_MAX_DOWNLOAD_BYTES,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_READ_TIMEOUT_MS,
  type FetchLimits,
  type BoundedResponse,
} from './fetch.js';
export { parseShardIndex, type ShardIndex } from './sharded.js';

// one safetensors file in memory
export { SafetensorsArchive, readSafetensors, type TensorInfo, type SafetensorsEntry } from './safetensors.js';
export type { SafetensorsDType } from './dtypes.js';
export {
  writeSafetensors,
  safetensorsLayout,
  type TensorToWrite,
  type TensorValues,
  type SafetensorsTensorSpec,
  type SafetensorsLayout,
} from './writer.js';

// Node: files, folders, conversion
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

// half-precision bits, as checkpoints store them
export { f16BitsToF32, bf16BitsToF32, f32ToF16Bits, f32ToBf16Bits } from './dtypes.js';

// config.json and other side files: JSON with a nesting cap, duplicate keys refused
export { parsePlainJson, JsonSyntaxError, MAX_JSON_DEPTH } from './json.js';
