/**
 * The state dict the pickle built (an OrderedDict of key → tensor) as strided views of storages, each
 * checked to stay inside its storage.
 */
import { DTYPE_SIZE } from '../dtypes.js';
import { CheckpointError, CheckpointErrorCode } from '../errors.js';
import { PTensor, describe, type PDict, type TorchTensorRef } from './values.js';

/** The tensors of `result` in file order; `forbidden` is the machine's PICKLE_FORBIDDEN error. */
export function stateDictTensors(
  result: PDict,
  file: string,
  forbidden: (msg: string, at: number) => Error,
): TorchTensorRef[] {
  const out: TorchTensorRef[] = [];
  for (const [k, v] of result.map) {
    if (typeof k !== 'string') throw forbidden(`state dict key ${describe(k)} is not a string`, 0);
    if (!(v instanceof PTensor)) throw forbidden(`state dict value of ${k} is a ${describe(v)}, not a tensor`, 0);
    validateView(file, k, v);
    out.push({
      key: k,
      dtype: v.storage.dtype,
      shape: v.shape,
      stride: v.stride,
      storageOffset: v.offset,
      storage: v.storage,
      requiresGrad: v.requiresGrad,
      isParameter: v.isParameter,
    });
  }
  return out;
}

/** Checks that a strided view stays inside its storage and its sizes are sane. */
function validateView(file: string, key: string, t: PTensor): void {
  const bad = (msg: string) =>
    new CheckpointError(CheckpointErrorCode.TORCH_INVALID_TENSOR, `${file}: ${key}: ${msg}`, {
      details: { file, key },
    });
  if (t.shape.length !== t.stride.length) throw bad(`size has ${t.shape.length} dims, stride ${t.stride.length}`);
  if (t.shape.length > 64) throw bad(`${t.shape.length} dimensions`);
  if (t.offset < 0) throw bad(`negative storage offset ${t.offset}`);
  let numel = 1n;
  let reach = BigInt(t.offset);
  for (const [d, s] of t.shape.entries()) {
    const st = t.stride[d] ?? 0; // same length as shape (checked above)
    if (s < 0) throw bad(`negative size ${s}`);
    if (st < 0) throw bad(`negative stride ${st}`);
    numel *= BigInt(s);
    if (s > 0) reach += BigInt(s - 1) * BigInt(st);
  }
  if (numel * BigInt(DTYPE_SIZE[t.storage.dtype]) > BigInt(Number.MAX_SAFE_INTEGER))
    throw bad(`${numel} elements is beyond 2^53 bytes`);
  if (numel > 0n && reach >= BigInt(t.storage.numel)) {
    throw bad(
      `view (offset ${t.offset}, size [${t.shape.join(', ')}], stride [${t.stride.join(', ')}]) reaches element ${reach} of a ${t.storage.numel}-element storage`,
    );
  }
}
