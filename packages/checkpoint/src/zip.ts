import { CheckpointError, CheckpointErrorCode } from './errors.js';
import type { ByteSource } from './sources.js';

const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;
/** Central directories larger than this are refused (a torch file has a few entries per tensor). */
const MAX_CENTRAL_DIRECTORY = 256 * 1024 * 1024;

export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflate. */
  method: number;
  compressedSize: number;
  size: number;
  crc32: number;
  localHeaderOffset: number;
}

const invalid = (file: string, msg: string) =>
  new CheckpointError(CheckpointErrorCode.ZIP_INVALID, `${file}: ${msg}`, { details: { file } });
const unsupported = (file: string, msg: string) =>
  new CheckpointError(CheckpointErrorCode.ZIP_UNSUPPORTED, `${file}: ${msg}`, { details: { file } });

function u64(dv: DataView, at: number, file: string): number {
  const v = dv.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid(file, `64-bit field ${v} is beyond 2^53`);
  return Number(v);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * A read-only zip reader over a random-access ByteSource, for the container `torch.save` writes
 * (STORED members aligned to 64 bytes; ZIP64 for files over 4 GiB). Reads the end record and the
 * central directory, then members on demand: stored members are read at any offset without
 * loading the whole member; deflated members (method 8) are inflated whole with
 * DecompressionStream('deflate-raw'), bounded by their declared size.
 */
export class ZipArchive {
  private readonly dataOffsets = new Map<string, number>();

  private constructor(
    readonly source: ByteSource,
    readonly entries: ReadonlyMap<string, ZipEntry>,
    private readonly centralOffset: number,
  ) {}

  /** Reads and validates the end record and the central directory. */
  static async open(source: ByteSource, signal?: AbortSignal): Promise<ZipArchive> {
    const file = source.name;
    const size = source.size;
    if (size < 22) throw invalid(file, `${size} bytes is too small for a zip file`);
    const tailLen = Math.min(size, 22 + 0xffff + 20);
    const tailStart = size - tailLen;
    const tail = await source.read(tailStart, tailLen, signal);
    const tdv = new DataView(tail.buffer, tail.byteOffset, tail.byteLength);
    let eocd = -1;
    for (let i = tail.byteLength - 22; i >= 0; i--) {
      if (tdv.getUint32(i, true) === SIG_EOCD && i + 22 + tdv.getUint16(i + 20, true) === tail.byteLength) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) throw invalid(file, 'no end-of-central-directory record (not a zip file, or truncated)');
    const diskNo = tdv.getUint16(eocd + 4, true);
    const cdDisk = tdv.getUint16(eocd + 6, true);
    let count = tdv.getUint16(eocd + 10, true);
    let cdSize = tdv.getUint32(eocd + 12, true);
    let cdOffset = tdv.getUint32(eocd + 16, true);
    let recordStart = tailStart + eocd;
    const hasLocator = eocd >= 20 && tdv.getUint32(eocd - 20, true) === SIG_ZIP64_LOCATOR;
    if (hasLocator) {
      const z64Offset = u64(tdv, eocd - 20 + 8, file);
      if (tdv.getUint32(eocd - 20 + 16, true) > 1) throw unsupported(file, 'multi-disk zip archives are not supported');
      if (z64Offset + 56 > recordStart - 20)
        throw invalid(file, `ZIP64 end record offset ${z64Offset} is out of bounds`);
      const z = await source.read(z64Offset, 56, signal);
      const zdv = new DataView(z.buffer, z.byteOffset, 56);
      if (zdv.getUint32(0, true) !== SIG_ZIP64_EOCD) throw invalid(file, 'ZIP64 end record signature mismatch');
      if (zdv.getUint32(16, true) !== 0 || zdv.getUint32(20, true) !== 0)
        throw unsupported(file, 'multi-disk zip archives are not supported');
      count = u64(zdv, 32, file);
      cdSize = u64(zdv, 40, file);
      cdOffset = u64(zdv, 48, file);
      recordStart = z64Offset;
    } else if (diskNo !== 0 || cdDisk !== 0) {
      throw unsupported(file, 'multi-disk zip archives are not supported');
    }
    if (cdOffset + cdSize > recordStart) {
      throw invalid(
        file,
        `central directory [${cdOffset}, ${cdOffset + cdSize}) overlaps the end record at ${recordStart}`,
      );
    }
    if (cdSize > MAX_CENTRAL_DIRECTORY)
      throw unsupported(file, `central directory of ${cdSize} bytes exceeds ${MAX_CENTRAL_DIRECTORY}`);
    if (count * 46 > cdSize) throw invalid(file, `${count} entries cannot fit in a ${cdSize}-byte central directory`);
    const cd = await source.read(cdOffset, cdSize, signal);
    const dv = new DataView(cd.buffer, cd.byteOffset, cd.byteLength);
    const entries = new Map<string, ZipEntry>();
    let p = 0;
    for (let k = 0; k < count; k++) {
      if (p + 46 > cdSize || dv.getUint32(p, true) !== SIG_CENTRAL)
        throw invalid(file, `central directory entry ${k} is corrupt`);
      const flags = dv.getUint16(p + 8, true);
      const method = dv.getUint16(p + 10, true);
      const crc32 = dv.getUint32(p + 16, true);
      let compressedSize = dv.getUint32(p + 20, true);
      let uncompressedSize = dv.getUint32(p + 24, true);
      const nameLen = dv.getUint16(p + 28, true);
      const extraLen = dv.getUint16(p + 30, true);
      const commentLen = dv.getUint16(p + 32, true);
      let diskStart = dv.getUint16(p + 34, true);
      let localHeaderOffset = dv.getUint32(p + 42, true);
      const end = p + 46 + nameLen + extraLen + commentLen;
      if (end > cdSize) throw invalid(file, `central directory entry ${k} overruns the directory`);
      let name: string;
      try {
        name = utf8.decode(cd.subarray(p + 46, p + 46 + nameLen));
      } catch {
        throw invalid(file, `entry ${k} has a name that is not UTF-8`);
      }
      // ZIP64 extended information: the fields whose 32-bit value is all ones, in this order
      let e = p + 46 + nameLen;
      const extraEnd = e + extraLen;
      while (e + 4 <= extraEnd) {
        const id = dv.getUint16(e, true);
        const len = dv.getUint16(e + 2, true);
        if (e + 4 + len > extraEnd) throw invalid(file, `${name}: extra field overruns its entry`);
        if (id === 0x0001) {
          let q = e + 4;
          const take = (): number => {
            if (q + 8 > e + 4 + len) throw invalid(file, `${name}: ZIP64 extra field too short`);
            const v = u64(dv, q, file);
            q += 8;
            return v;
          };
          if (uncompressedSize === 0xffffffff) uncompressedSize = take();
          if (compressedSize === 0xffffffff) compressedSize = take();
          if (localHeaderOffset === 0xffffffff) localHeaderOffset = take();
          if (diskStart === 0xffff) {
            if (q + 4 > e + 4 + len) throw invalid(file, `${name}: ZIP64 extra field too short`);
            diskStart = dv.getUint32(q, true);
          }
        }
        e += 4 + len;
      }
      if (flags & 0x1) throw unsupported(file, `${name} is encrypted`);
      if (diskStart !== 0) throw unsupported(file, 'multi-disk zip archives are not supported');
      if (method !== 0 && method !== 8)
        throw unsupported(
          file,
          `${name} uses compression method ${method}; only stored (0) and deflate (8) are supported`,
        );
      if (method === 0 && compressedSize !== uncompressedSize) {
        throw invalid(file, `${name} is stored but its sizes differ (${compressedSize} vs ${uncompressedSize})`);
      }
      if (localHeaderOffset + 30 + compressedSize > cdOffset) {
        throw invalid(
          file,
          `${name}: data at ${localHeaderOffset} (+${compressedSize}) runs into the central directory at ${cdOffset}`,
        );
      }
      if (entries.has(name)) throw invalid(file, `entry ${JSON.stringify(name)} appears twice`);
      entries.set(name, { name, method, compressedSize, size: uncompressedSize, crc32, localHeaderOffset });
      p = end;
    }
    return new ZipArchive(source, entries, cdOffset);
  }

  get(name: string): ZipEntry | undefined {
    return this.entries.get(name);
  }

  /** Absolute offset of the member's (possibly compressed) data, from its local header. */
  async dataOffset(entry: ZipEntry, signal?: AbortSignal): Promise<number> {
    const cached = this.dataOffsets.get(entry.name);
    if (cached !== undefined) return cached;
    const file = this.source.name;
    const h = await this.source.read(entry.localHeaderOffset, 30, signal);
    const dv = new DataView(h.buffer, h.byteOffset, 30);
    if (dv.getUint32(0, true) !== SIG_LOCAL) throw invalid(file, `${entry.name}: local header signature mismatch`);
    const start = entry.localHeaderOffset + 30 + dv.getUint16(26, true) + dv.getUint16(28, true);
    if (start + entry.compressedSize > this.centralOffset) {
      throw invalid(
        file,
        `${entry.name}: data [${start}, ${start + entry.compressedSize}) runs into the central directory`,
      );
    }
    this.dataOffsets.set(entry.name, start);
    return start;
  }

  /** Reads `length` bytes at `offset` of a member's uncompressed data. */
  async read(entry: ZipEntry, offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    if (offset < 0 || length < 0 || offset + length > entry.size) {
      throw invalid(
        this.source.name,
        `${entry.name}: read [${offset}, ${offset + length}) outside the member's ${entry.size} bytes`,
      );
    }
    if (entry.method === 0) {
      const start = await this.dataOffset(entry, signal);
      return this.source.read(start + offset, length, signal);
    }
    const all = await this.readAll(entry, signal);
    return all.subarray(offset, offset + length);
  }

  /** The whole uncompressed member. */
  async readAll(entry: ZipEntry, signal?: AbortSignal): Promise<Uint8Array> {
    const start = await this.dataOffset(entry, signal);
    const raw = await this.source.read(start, entry.compressedSize, signal);
    if (entry.method === 0) return raw;
    return inflateRaw(raw, entry.size, `${this.source.name}:${entry.name}`);
  }
}

/** Inflates raw deflate data, refusing output other than exactly `expectedSize` bytes. */
export async function inflateRaw(data: Uint8Array, expectedSize: number, what: string): Promise<Uint8Array> {
  if (typeof DecompressionStream !== 'function') {
    throw new CheckpointError(
      CheckpointErrorCode.ZIP_UNSUPPORTED,
      `${what}: deflate needs DecompressionStream, absent in this runtime`,
    );
  }
  const out = new Uint8Array(expectedSize);
  let n = 0;
  const stream = new Blob([data as Uint8Array<ArrayBuffer>])
    .stream()
    .pipeThrough(new DecompressionStream('deflate-raw'));
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (n + value.byteLength > expectedSize) {
        throw new CheckpointError(
          CheckpointErrorCode.ZIP_INVALID,
          `${what}: inflates to more than the declared ${expectedSize} bytes`,
        );
      }
      out.set(value, n);
      n += value.byteLength;
    }
  } catch (e) {
    await reader.cancel().catch(() => {});
    if (e instanceof CheckpointError) throw e;
    throw new CheckpointError(CheckpointErrorCode.ZIP_INVALID, `${what}: corrupt deflate data (${String(e)})`, {
      cause: e,
    });
  }
  if (n !== expectedSize) {
    throw new CheckpointError(
      CheckpointErrorCode.ZIP_INVALID,
      `${what}: inflates to ${n} bytes, the directory declares ${expectedSize}`,
    );
  }
  return out;
}
