/**
 * Browser-safe entry points to the Node-only functions of node.ts: each loads node.ts with a
 * dynamic import when called, so importing @owlet/core in a browser never evaluates `node:` modules.
 * Calling them outside Node throws CheckpointError('NODE_ONLY').
 */
import { loadNode, type CheckpointProgress } from './checkpoint.js';
import type { ByteSource } from './sources.js';
import type { AtomicFolderOptions } from './atomic-folder.js';
import type { SafetensorsTensorSpec, TensorToWrite } from './writer.js';

export interface ConvertOptions {
  /** Reading progress of the source shards (`initiate`, `progress`, `done`). */
  onProgress?: (event: CheckpointProgress) => void;
  /** Stops the conversion; the destination is left as it was (the temporary folder is removed). */
  signal?: AbortSignal;
  /** Replace a destination folder that exists and is not empty (default false: DESTINATION_NOT_EMPTY). */
  force?: boolean;
  /** Also copy the source folder's config.json, tokenizer files, … so the output is a model folder. */
  copySideFiles?: boolean;
}

export interface ConvertResult {
  /** Written safetensors files (names inside dstDir). */
  files: string[];
  /** `model.safetensors.index.json` when the input was sharded. */
  index?: string;
  tensors: number;
  bytes: number;
  /** Side files copied (with `copySideFiles`). */
  copied: string[];
}

/** The streaming, atomic safetensors file writer (implemented by node.ts' SafetensorsFileWriter). */
export interface SafetensorsFileWriterLike {
  readonly path: string;
  readonly fileSize: number;
  /** Writes the next tensor's little-endian bytes (keys in spec order). */
  write(key: string, bytes: Uint8Array): Promise<void>;
  /** Verifies completeness, fsyncs and renames the temporary file onto the final name. */
  commit(): Promise<void>;
  /** Removes the temporary file; the final name is untouched. */
  abort(): Promise<void>;
}

/**
 * Converts a PyTorch `.bin` checkpoint folder (or file) to safetensors in `dstDir`, sharded like
 * the input (`pytorch_model-k-of-n.bin` → `model-k-of-n.safetensors`, index rewritten to
 * `model.safetensors.index.json`), streamed tensor by tensor. All-or-nothing: the folder is built
 * as a temporary sibling and renamed onto `dstDir` when complete (see {@link writeFolderAtomic}),
 * so an error, abort, kill or full disk leaves `dstDir` as it was. A non-empty `dstDir` is refused
 * (DESTINATION_NOT_EMPTY) unless `force`; a concurrent writer gets DESTINATION_LOCKED. Node only.
 */
export async function convertBinToSafetensors(
  srcDir: string,
  dstDir: string,
  options: ConvertOptions = {},
): Promise<ConvertResult> {
  return (await loadNode()).convertBinToSafetensors(srcDir, dstDir, options);
}

/** Starts a streaming safetensors file (header from `specs`; then `write` each tensor in order; `commit`). Node only. */
export async function createSafetensorsFileWriter(
  path: string,
  specs: readonly SafetensorsTensorSpec[],
  metadata: Record<string, string> = {},
): Promise<SafetensorsFileWriterLike> {
  return (await loadNode()).SafetensorsFileWriter.create(path, specs, metadata);
}

/** Writes tensors to a safetensors file atomically (temporary file + rename). Node only. */
export async function writeSafetensorsFile(
  path: string,
  tensors: Map<string, TensorToWrite> | Iterable<readonly [string, TensorToWrite]>,
  metadata: Record<string, string> = {},
): Promise<void> {
  return (await loadNode()).writeSafetensorsFile(path, tensors, metadata);
}

/** Opens a file for positional reads (undefined if absent). Node only. */
export async function openFileSource(path: string): Promise<ByteSource | undefined> {
  return (await loadNode()).openFileSource(path);
}

/**
 * Builds the folder `dst` all-or-nothing (Node only): `build(tmpDir)` writes into a temporary
 * sibling folder that is fsynced and renamed onto `dst` only when complete. Refuses a non-empty
 * `dst` unless `force`; one writer at a time (lock); sweeps temporaries of killed writers.
 */
export async function writeFolderAtomic<T>(
  dst: string,
  build: (tmpDir: string) => Promise<T>,
  options: AtomicFolderOptions = {},
): Promise<T> {
  await loadNode();
  return (await import('./atomic-folder.js')).writeFolderAtomic(dst, build, options);
}

/**
 * Writes a file atomically (Node only): a temporary sibling `<name>.<pid>.<hex>.tmp`, fsync,
 * rename onto the name. Temporaries of killed writers are swept first.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  return (await loadNode()).writeFileAtomic(path, data);
}

/** Removes temporaries and locks left beside `dst` by writers that were killed (Node only). */
export async function sweepStaleTemporaries(dst: string): Promise<void> {
  await loadNode();
  return (await import('./atomic-folder.js')).sweepStaleTemporaries(dst);
}
