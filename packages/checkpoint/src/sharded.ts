/**
 * Sharded checkpoint index files (`model.safetensors.index.json`, `pytorch_model.bin.index.json`):
 * parsing and shard-name confinement. A shard name must be a plain file name inside the checkpoint
 * folder; it is checked before anything is opened or fetched.
 */
import { CheckpointError, CheckpointErrorCode } from './errors.js';
import { JsonSyntaxError, type JsonValue, jsonTypeName, jsonUnsignedInteger, parseJson } from './json.js';

export const SAFETENSORS_INDEX_NAME = 'model.safetensors.index.json';
export const PYTORCH_INDEX_NAME = 'pytorch_model.bin.index.json';
export const SAFETENSORS_SINGLE_NAME = 'model.safetensors';
export const PYTORCH_SINGLE_NAME = 'pytorch_model.bin';
/** Index files larger than this are refused. */
export const MAX_INDEX_BYTES = 64 * 1024 * 1024;

/** A parsed index file. */
export interface ShardIndex {
  /** The index's file name. */
  name: string;
  /** `metadata.total_size` when present (a non-negative integer), else undefined. */
  totalSize: number | undefined;
  /** tensor key → shard file name, in file order. */
  weightMap: Map<string, string>;
  /** Distinct shard names in natural order (`-2-of-10` before `-10-of-10`). */
  shards: string[];
}

/** Natural ordering of shard names so that numbered shards stay in numeric order. */
export function compareShardNames(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

/**
 * Refuses any shard name that is not a plain file name: path separators (`/`, `\`), `..`, absolute
 * paths, drive letters and URL schemes (`:`), percent-encoding (`%`), control characters, leading
 * dots, or anything outside `[A-Za-z0-9._+-]`. `extension` is the required suffix.
 */
export function validateShardName(name: string, indexName: string, extension: string): void {
  const fail = (why: string) =>
    new CheckpointError(
      CheckpointErrorCode.INDEX_UNSAFE_SHARD_NAME,
      `${indexName}: shard name ${JSON.stringify(name)} is refused: ${why}; shard names must be plain file names in the checkpoint folder`,
      { details: { index: indexName, shard: name } },
    );
  if (name.length === 0 || name.length > 255) throw fail('empty or longer than 255 characters');
  if (name.includes('/') || name.includes('\\')) throw fail('it contains a path separator');
  if (name.includes('%')) throw fail('it contains percent-encoding');
  if (name.includes(':')) throw fail('it looks like a URL or drive path');
  if (name.startsWith('.')) throw fail('it starts with a dot');
  if (!/^[A-Za-z0-9_][A-Za-z0-9._+-]*$/.test(name)) throw fail('it contains characters outside [A-Za-z0-9._+-]');
  if (!name.endsWith(extension)) throw fail(`it does not end with ${extension}`);
}

/** Parses an index file and validates every shard name (nothing is opened here). */
export function parseShardIndex(text: string, indexName: string): ShardIndex {
  const bad = (msg: string, cause?: unknown) =>
    new CheckpointError(CheckpointErrorCode.INDEX_INVALID, `${indexName}: ${msg}`, {
      details: { index: indexName },
      cause,
    });
  let json: JsonValue;
  try {
    json = parseJson(text);
  } catch (e) {
    if (e instanceof JsonSyntaxError) {
      if (e.duplicateKey !== undefined) {
        throw new CheckpointError(
          CheckpointErrorCode.INDEX_TENSOR_DUPLICATED,
          `${indexName}: key ${JSON.stringify(e.duplicateKey)} is listed twice`,
          { details: { index: indexName, key: e.duplicateKey }, cause: e },
        );
      }
      throw bad(`not valid JSON: ${e.message}`, e);
    }
    throw e;
  }
  if (!(json instanceof Map)) throw bad(`expected a JSON object, got ${jsonTypeName(json)}`);
  const wm = json.get('weight_map');
  if (!(wm instanceof Map)) throw bad(`weight_map must be an object, got ${jsonTypeName(wm)}`);
  let totalSize: number | undefined;
  const meta = json.get('metadata');
  if (meta !== undefined && meta !== null) {
    if (!(meta instanceof Map)) throw bad(`metadata must be an object, got ${jsonTypeName(meta)}`);
    const ts = meta.get('total_size');
    if (ts !== undefined && ts !== null) {
      const b = jsonUnsignedInteger(ts);
      if (b === undefined || b > BigInt(Number.MAX_SAFE_INTEGER))
        throw bad(`metadata.total_size must be a non-negative integer, got ${jsonTypeName(ts)}`);
      totalSize = Number(b);
    }
  }
  const extension = indexName.endsWith('.bin.index.json')
    ? '.bin'
    : indexName.endsWith('.safetensors.index.json')
      ? '.safetensors'
      : '';
  const weightMap = new Map<string, string>();
  const names = new Set<string>();
  for (const [key, shard] of wm) {
    if (typeof shard !== 'string')
      throw bad(`weight_map[${JSON.stringify(key)}] must be a string, got ${jsonTypeName(shard)}`);
    validateShardName(shard, indexName, extension || (shard.endsWith('.bin') ? '.bin' : '.safetensors'));
    weightMap.set(key, shard);
    names.add(shard);
  }
  if (weightMap.size === 0) throw bad('weight_map is empty');
  const shards = [...names].sort(compareShardNames);
  if (!extension) {
    const kinds = new Set(shards.map((s) => (s.endsWith('.bin') ? '.bin' : '.safetensors')));
    if (kinds.size > 1) throw bad('weight_map mixes .bin and .safetensors shards');
  }
  return { name: indexName, totalSize, weightMap, shards };
}
