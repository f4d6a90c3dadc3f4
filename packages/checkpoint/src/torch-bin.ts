import { CheckpointError, CheckpointErrorCode } from './errors.js';
import { DTYPE_SIZE, alignedCopy } from './dtypes.js';
import { unpickleStateDict, type TorchTensorRef } from './pickle/index.js';
import type { ByteSource } from './sources.js';
import { ZipArchive, type ZipEntry } from './zip.js';

const bad = (file: string, key: string, msg: string) =>
  new CheckpointError(CheckpointErrorCode.TORCH_INVALID_TENSOR, `${file}: ${key}: ${msg}`, { details: { file, key } });

/**
 * PyTorch `.bin` files written by `torch.save(state_dict)` (the zip format of torch ≥ 1.6):
 * `<archive>/data.pkl` (the pickle, read by the restricted unpickler), `<archive>/data/<key>` (one
 * member per storage, raw little-endian elements) and `<archive>/version`. Tensors are strided
 * views of storages; reading one gathers its elements into contiguous bytes of its own dtype, so
 * values are bit-exact and a view never pulls in more of the storage than it reaches.
 */
export class TorchBinFile {
  private constructor(
    readonly source: ByteSource,
    readonly zip: ZipArchive,
    readonly tensors: readonly TorchTensorRef[],
    private readonly members: ReadonlyMap<string, ZipEntry>,
  ) {}

  /** Opens the zip, unpickles data.pkl and checks every storage member exists with the right size. */
  static async open(source: ByteSource, signal?: AbortSignal): Promise<TorchBinFile> {
    const file = source.name;
    if (source.size >= 2) {
      const magic = await source.read(0, 2, signal);
      if (magic[0] === 0x80 && magic[1] !== undefined && magic[1] <= 5) {
        throw new CheckpointError(
          CheckpointErrorCode.TORCH_UNSUPPORTED_FORMAT,
          `${file} is a legacy (pre-1.6, non-zip) torch.save file; re-save it with a current torch or convert it to safetensors in Python`,
          { details: { file } },
        );
      }
    }
    const zip = await ZipArchive.open(source, signal);
    const pkls = [...zip.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
    if (pkls.length !== 1) {
      throw new CheckpointError(
        CheckpointErrorCode.TORCH_UNSUPPORTED_FORMAT,
        `${file}: expected exactly one <archive>/data.pkl member, found ${pkls.length}; not a torch.save file`,
        { details: { file } },
      );
    }
    const prefix = pkls[0]!.slice(0, -'data.pkl'.length);
    const order = zip.get(`${prefix}byteorder`);
    if (order) {
      const text = new TextDecoder().decode(await zip.readAll(order, signal)).trim();
      if (text !== 'little') {
        throw new CheckpointError(
          CheckpointErrorCode.TORCH_UNSUPPORTED_FORMAT,
          `${file}: byte order ${JSON.stringify(text)} is not supported`,
        );
      }
    }
    const pkl = zip.get(pkls[0]!)!;
    const tensors = unpickleStateDict(await zip.readAll(pkl, signal), file);
    const members = new Map<string, ZipEntry>();
    for (const t of tensors) {
      const s = t.storage;
      if (members.has(s.key)) continue;
      const m = zip.get(`${prefix}data/${s.key}`);
      if (!m) {
        throw new CheckpointError(
          CheckpointErrorCode.ZIP_ENTRY_NOT_FOUND,
          `${file}: storage ${s.key} of ${t.key} has no member ${prefix}data/${s.key}`,
          {
            details: { file, key: t.key, storage: s.key },
          },
        );
      }
      const want = s.numel * DTYPE_SIZE[s.dtype];
      if (m.size !== want) {
        throw bad(
          file,
          t.key,
          `storage ${s.key} should hold ${s.numel} ${s.dtype} elements (${want} bytes), its member has ${m.size}`,
        );
      }
      members.set(s.key, m);
    }
    return new TorchBinFile(source, zip, tensors, members);
  }

  /**
   * The tensor's bytes (as {@link readContiguous}) in pieces of at most `chunkBytes`: a contiguous
   * tensor of a stored (uncompressed) member is read piece by piece, so memory stays near one
   * piece however large the tensor; a strided view or a deflated member comes as one piece.
   */
  async *readContiguousChunks(t: TorchTensorRef, chunkBytes: number, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
    const es = DTYPE_SIZE[t.dtype];
    let numel = 1;
    for (const d of t.shape) numel *= d;
    const member = this.members.get(t.storage.key);
    let contiguous = true;
    let expect = 1;
    for (let d = t.shape.length - 1; d >= 0; d--) {
      if (t.shape[d] === 1) continue;
      if (t.stride[d] !== expect) {
        contiguous = false;
        break;
      }
      expect *= t.shape[d] as number;
    }
    const length = numel * es;
    if (!member || !contiguous || member.method !== 0 || length <= chunkBytes) {
      yield await this.readContiguous(t, signal);
      return;
    }
    for (let done = 0; done < length; done += chunkBytes) {
      yield await this.zip.read(member, t.storageOffset * es + done, Math.min(chunkBytes, length - done), signal);
    }
  }

  /**
   * The tensor's elements in row-major order as little-endian bytes of its dtype (bit-exact). A
   * contiguous tensor is one positional read; a strided view reads only the span it reaches and
   * gathers from it.
   */
  async readContiguous(t: TorchTensorRef, signal?: AbortSignal): Promise<Uint8Array> {
    const es = DTYPE_SIZE[t.dtype];
    let numel = 1;
    for (const d of t.shape) numel *= d;
    if (numel === 0) return new Uint8Array(0);
    const member = this.members.get(t.storage.key)!;
    // row-major contiguity, ignoring size-1 dims
    let expect = 1;
    let contiguous = true;
    for (let d = t.shape.length - 1; d >= 0; d--) {
      if (t.shape[d] === 1) continue;
      if (t.stride[d] !== expect) {
        contiguous = false;
        break;
      }
      expect *= t.shape[d]!;
    }
    if (contiguous) {
      const bytes = await this.zip.read(member, t.storageOffset * es, numel * es, signal);
      // A read that filled a buffer of its own (file, Blob and URL sources allocate one per read)
      // is returned as is: one copy of a 32 MiB tensor fewer at the peak of a conversion. A view
      // into a larger buffer (bytes in memory, an inflated member) is copied, aligned.
      if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) return bytes;
      return new Uint8Array(alignedCopy(bytes));
    }
    let reach = t.storageOffset;
    for (let d = 0; d < t.shape.length; d++) reach += (t.shape[d]! - 1) * t.stride[d]!;
    const span = await this.zip.read(member, t.storageOffset * es, (reach - t.storageOffset + 1) * es, signal);
    return gather(alignedCopy(span), es, t.shape, t.stride, numel);
  }
}

/** Copies a strided view (relative offset 0) out of `span` into row-major order. */
function gather(span: ArrayBuffer, es: number, shape: number[], stride: number[], numel: number): Uint8Array {
  const out = new ArrayBuffer(numel * es);
  // 8-byte elements move as two 32-bit words
  const words = es === 8 ? 2 : 1;
  const unit = es === 8 ? 4 : es;
  const ctor = unit === 4 ? Uint32Array : unit === 2 ? Uint16Array : Uint8Array;
  const src = new ctor(span);
  const dst = new ctor(out);
  const rank = shape.length;
  const idx = new Array<number>(rank).fill(0);
  let srcPos = 0;
  for (let o = 0; o < numel; o++) {
    for (let w = 0; w < words; w++) dst[o * words + w] = src[srcPos * words + w]!;
    // odometer increment
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]!++;
      srcPos += stride[d]!;
      if (idx[d]! < shape[d]!) break;
      srcPos -= stride[d]! * shape[d]!;
      idx[d] = 0;
    }
  }
  return new Uint8Array(out);
}
