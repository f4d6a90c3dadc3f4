/**
 * Test helpers for checkpoint I/O (not exported from the package): builders for raw safetensors
 * files, pickles and zip containers, written from the format specifications so tests can craft
 * valid and hostile inputs byte by byte.
 */
import { mulberry32 } from '@owlet/test-utils';

/** A safetensors file from a header (object or raw JSON text) and a data section. */
export function rawSafetensors(
  header: unknown,
  data: Uint8Array | number = 0,
  options: { n?: bigint; pad?: number } = {},
): Uint8Array {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  const h = new TextEncoder().encode(text + ' '.repeat(options.pad ?? 0));
  const d = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + h.byteLength + d.byteLength);
  new DataView(out.buffer).setBigUint64(0, options.n ?? BigInt(h.byteLength), true);
  out.set(h, 8);
  out.set(d, 8 + h.byteLength);
  return out;
}

/** Pickle opcodes writer (protocol 2 subset and then some, for hostile inputs). */
export class PickleWriter {
  private parts: number[] = [];
  bytes(...b: number[]): this {
    this.parts.push(...b);
    return this;
  }
  op(ch: string): this {
    return this.bytes(ch.charCodeAt(0));
  }
  proto(v = 2): this {
    return this.bytes(0x80, v);
  }
  str(s: string): this {
    const b = new TextEncoder().encode(s);
    this.bytes(0x58, b.length & 0xff, (b.length >> 8) & 0xff, (b.length >> 16) & 0xff, b.length >>> 24);
    return this.bytes(...b);
  }
  int(v: number): this {
    if (v >= 0 && v < 256) return this.bytes(0x4b, v);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setInt32(0, v, true);
    return this.bytes(0x4a, ...b);
  }
  global(module: string, name: string): this {
    this.op('c');
    return this.bytes(...new TextEncoder().encode(`${module}\n${name}\n`));
  }
  /** Pushes ints as a tuple. */
  tuple(vals: number[]): this {
    this.op('(');
    for (const v of vals) this.int(v);
    return this.op('t');
  }
  /** One `_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())` call. */
  tensor(storageType: string, key: string, numel: number, offset: number, size: number[], stride: number[]): this {
    this.global('torch._utils', '_rebuild_tensor_v2');
    this.op('(');
    this.op('(').str('storage').global('torch', storageType).str(key).str('cpu').int(numel).op('t');
    this.op('Q');
    this.int(offset).tuple(size).tuple(stride).bytes(0x89);
    this.global('collections', 'OrderedDict').op(')').op('R');
    this.op('t').op('R');
    return this;
  }
  build(): Uint8Array {
    return new Uint8Array(this.parts);
  }
}

export interface ZipMember {
  name: string;
  data: Uint8Array;
  /** Stored (0, default) or deflate (8); for 8, `compressed` holds the deflated bytes. */
  method?: 0 | 8;
  compressed?: Uint8Array;
}

function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) {
    c ^= data[i]!;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

/** A zip file (optionally with ZIP64 records for every size and offset, as large torch files have). */
export function buildZip(members: ZipMember[], options: { zip64?: boolean } = {}): Uint8Array {
  const chunks: Uint8Array[] = [];
  let offset = 0;
  const central: Uint8Array[] = [];
  const enc = new TextEncoder();
  const z64 = options.zip64 ?? false;
  for (const m of members) {
    const name = enc.encode(m.name);
    const payload = m.method === 8 ? m.compressed! : m.data;
    const local = new Uint8Array(30 + name.length + (z64 ? 20 : 0));
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, z64 ? 45 : 20, true);
    lv.setUint16(8, m.method ?? 0, true);
    lv.setUint32(14, crc32(m.data), true);
    lv.setUint32(18, z64 ? 0xffffffff : payload.length, true);
    lv.setUint32(22, z64 ? 0xffffffff : m.data.length, true);
    lv.setUint16(26, name.length, true);
    lv.setUint16(28, z64 ? 20 : 0, true);
    local.set(name, 30);
    if (z64) {
      lv.setUint16(30 + name.length, 1, true);
      lv.setUint16(32 + name.length, 16, true);
      lv.setBigUint64(34 + name.length, BigInt(m.data.length), true);
      lv.setBigUint64(42 + name.length, BigInt(payload.length), true);
    }
    const extra = z64 ? 28 : 0;
    const cd = new Uint8Array(46 + name.length + extra);
    const cv = new DataView(cd.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, 45, true);
    cv.setUint16(6, z64 ? 45 : 20, true);
    cv.setUint16(10, m.method ?? 0, true);
    cv.setUint32(16, crc32(m.data), true);
    cv.setUint32(20, z64 ? 0xffffffff : payload.length, true);
    cv.setUint32(24, z64 ? 0xffffffff : m.data.length, true);
    cv.setUint16(28, name.length, true);
    cv.setUint16(30, extra, true);
    cv.setUint32(42, z64 ? 0xffffffff : offset, true);
    cd.set(name, 46);
    if (z64) {
      const e = 46 + name.length;
      cv.setUint16(e, 1, true);
      cv.setUint16(e + 2, 24, true);
      cv.setBigUint64(e + 4, BigInt(m.data.length), true);
      cv.setBigUint64(e + 12, BigInt(payload.length), true);
      cv.setBigUint64(e + 20, BigInt(offset), true);
    }
    central.push(cd);
    chunks.push(local, payload);
    offset += local.length + payload.length;
  }
  const cdOffset = offset;
  const cdSize = central.reduce((a, c) => a + c.length, 0);
  chunks.push(...central);
  offset += cdSize;
  if (z64) {
    const rec = new Uint8Array(56);
    const rv = new DataView(rec.buffer);
    rv.setUint32(0, 0x06064b50, true);
    rv.setBigUint64(4, 44n, true);
    rv.setUint16(12, 45, true);
    rv.setUint16(14, 45, true);
    rv.setBigUint64(24, BigInt(members.length), true);
    rv.setBigUint64(32, BigInt(members.length), true);
    rv.setBigUint64(40, BigInt(cdSize), true);
    rv.setBigUint64(48, BigInt(cdOffset), true);
    const loc = new Uint8Array(20);
    const lv = new DataView(loc.buffer);
    lv.setUint32(0, 0x07064b50, true);
    lv.setBigUint64(8, BigInt(offset), true);
    lv.setUint32(16, 1, true);
    chunks.push(rec, loc);
  }
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, z64 ? 0xffff : members.length, true);
  ev.setUint16(10, z64 ? 0xffff : members.length, true);
  ev.setUint32(12, z64 ? 0xffffffff : cdSize, true);
  ev.setUint32(16, z64 ? 0xffffffff : cdOffset, true);
  chunks.push(end);
  const total = chunks.reduce((a, c) => a + c.length, 0);
  const out = new Uint8Array(total);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

/** A torch.save-like file: `archive/data.pkl`, `archive/data/<key>` storages, `archive/version`. */
export function buildTorchFile(
  pickle: Uint8Array,
  storages: Record<string, Uint8Array>,
  options: { zip64?: boolean; deflate?: (d: Uint8Array) => Uint8Array } = {},
): Uint8Array {
  const members: ZipMember[] = [{ name: 'archive/data.pkl', data: pickle }];
  for (const [k, v] of Object.entries(storages)) {
    members.push(
      options.deflate
        ? { name: `archive/data/${k}`, data: v, method: 8, compressed: options.deflate(v) }
        : { name: `archive/data/${k}`, data: v },
    );
  }
  members.push({ name: 'archive/version', data: new TextEncoder().encode('3\n') });
  return buildZip(members, options.zip64 === undefined ? {} : { zip64: options.zip64 });
}

/** Deterministic pseudo-random numbers in [0, 1) (test-utils' mulberry32). */
export const prng = mulberry32;
