/**
 * A minimal protobuf encoder and the ONNX messages the exporter writes (field numbers from
 * onnx/onnx.proto: ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto, ValueInfoProto,
 * TypeProto, TensorShapeProto, OperatorSetIdProto). A message is kept as a list of byte chunks with
 * a known length, so GiB-sized initializers are referenced, never copied, until written out.
 */
import { open, rename, rm } from 'node:fs/promises';

const utf8 = new TextEncoder();

/** Protobuf wire types. */
const VARINT = 0;
const FIXED32 = 5;
const LEN = 2;

export class ProtoMessage {
  readonly chunks: Uint8Array[] = [];
  length = 0;
  private scratch: number[] = [];

  private push(b: Uint8Array): void {
    if (b.length === 0) return;
    this.chunks.push(b);
    this.length += b.length;
  }

  private flushScratch(): void {
    if (this.scratch.length) {
      this.push(Uint8Array.from(this.scratch));
      this.scratch = [];
    }
  }

  private varintInto(v: number | bigint): void {
    let x = BigInt.asUintN(64, BigInt(v));
    if (x < 0x80n) {
      this.scratch.push(Number(x));
      return;
    }
    while (x >= 0x80n) {
      this.scratch.push(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    this.scratch.push(Number(x));
  }

  private tag(field: number, wire: number): void {
    this.varintInto((field << 3) | wire);
  }

  /** int32 / int64 / enum / bool (negative values as 10-byte two's complement, as protobuf does). */
  int(field: number, v: number | bigint | boolean): this {
    this.tag(field, VARINT);
    this.varintInto(typeof v === 'boolean' ? (v ? 1 : 0) : v);
    return this;
  }

  float(field: number, v: number): this {
    this.tag(field, FIXED32);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    for (const x of b) this.scratch.push(x);
    return this;
  }

  bytes(field: number, b: Uint8Array): this {
    this.tag(field, LEN);
    this.varintInto(b.length);
    this.flushScratch();
    this.push(b);
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, utf8.encode(s));
  }

  message(field: number, m: ProtoMessage): this {
    m.flushScratch();
    this.tag(field, LEN);
    this.varintInto(m.length);
    this.flushScratch();
    for (const c of m.chunks) this.push(c);
    return this;
  }

  /** All chunks (flushes pending bytes). */
  parts(): Uint8Array[] {
    this.flushScratch();
    return this.chunks;
  }

  toBytes(): Uint8Array {
    const parts = this.parts();
    const out = new Uint8Array(this.length);
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }

  /** Streams the message to a file (atomically: temporary file, then rename). */
  async writeFile(path: string): Promise<void> {
    const tmp = `${path}.tmp-${process.pid}`;
    const fh = await open(tmp, 'w');
    try {
      let pos = 0;
      // coalesce small chunks into ~1 MiB writes
      let pending: Uint8Array[] = [];
      let pendingLen = 0;
      const flush = async () => {
        if (!pendingLen) return;
        const buf = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingLen);
        await fh.write(buf, 0, buf.length, pos);
        pos += buf.length;
        pending = [];
        pendingLen = 0;
      };
      for (const c of this.parts()) {
        if (c.length >= 1 << 20) {
          await flush();
          await fh.write(c, 0, c.length, pos);
          pos += c.length;
        } else {
          pending.push(c);
          pendingLen += c.length;
          if (pendingLen >= 1 << 20) await flush();
        }
      }
      await flush();
      await fh.close();
      await rename(tmp, path);
    } catch (e) {
      await fh.close().catch(() => undefined);
      await rm(tmp, { force: true });
      throw e;
    }
  }
}

/** onnx.TensorProto.DataType */
export const OnnxDataType = { FLOAT: 1, INT32: 6, INT64: 7 } as const;
/** onnx.AttributeProto.AttributeType */
const AttrType = { FLOAT: 1, INT: 2, STRING: 3, FLOATS: 6, INTS: 7 } as const;

export type OnnxAttribute = number | bigint | string | readonly number[] | { float: number };

/** TensorProto with raw_data (little-endian bytes, referenced without a copy). */
export function tensorProto(name: string, dims: readonly number[], dataType: number, raw: Uint8Array): ProtoMessage {
  const m = new ProtoMessage();
  for (const d of dims) m.int(1, d); // dims
  m.int(2, dataType); // data_type
  m.string(8, name); // name
  m.bytes(9, raw); // raw_data
  return m;
}

export function attributeProto(name: string, v: OnnxAttribute): ProtoMessage {
  const m = new ProtoMessage();
  m.string(1, name);
  if (typeof v === 'object' && !Array.isArray(v) && 'float' in (v as object)) {
    m.float(2, (v as { float: number }).float).int(20, AttrType.FLOAT);
  } else if (typeof v === 'number' || typeof v === 'bigint') {
    m.int(3, v).int(20, AttrType.INT);
  } else if (typeof v === 'string') {
    m.string(4, v).int(20, AttrType.STRING);
  } else {
    for (const x of v as readonly number[]) m.int(8, x);
    m.int(20, AttrType.INTS);
  }
  return m;
}

export function nodeProto(
  op: string,
  inputs: readonly string[],
  outputs: readonly string[],
  name: string,
  attrs: Record<string, OnnxAttribute> = {},
): ProtoMessage {
  const m = new ProtoMessage();
  for (const i of inputs) m.string(1, i);
  for (const o of outputs) m.string(2, o);
  m.string(3, name);
  m.string(4, op);
  for (const [k, v] of Object.entries(attrs)) m.message(5, attributeProto(k, v));
  return m;
}

/** ValueInfoProto of a float tensor; a dimension is a number or a symbolic name. */
export function valueInfoProto(name: string, elemType: number, dims: readonly (number | string)[]): ProtoMessage {
  const shape = new ProtoMessage();
  for (const d of dims) {
    const dim = new ProtoMessage();
    if (typeof d === 'number') dim.int(1, d);
    else dim.string(2, d);
    shape.message(1, dim);
  }
  const tensorType = new ProtoMessage().int(1, elemType).message(2, shape);
  const type = new ProtoMessage().message(1, tensorType);
  return new ProtoMessage().string(1, name).message(2, type);
}

export interface OnnxModelParts {
  graphName: string;
  nodes: ProtoMessage[];
  initializers: ProtoMessage[];
  inputs: ProtoMessage[];
  outputs: ProtoMessage[];
  opset: number;
  irVersion: number;
  producer: string;
  producerVersion: string;
}

export function modelProto(p: OnnxModelParts): ProtoMessage {
  const graph = new ProtoMessage();
  for (const n of p.nodes) graph.message(1, n);
  graph.string(2, p.graphName);
  for (const t of p.initializers) graph.message(5, t);
  for (const i of p.inputs) graph.message(11, i);
  for (const o of p.outputs) graph.message(12, o);
  const opset = new ProtoMessage().string(1, '').int(2, p.opset);
  return new ProtoMessage()
    .int(1, p.irVersion)
    .string(2, p.producer)
    .string(3, p.producerVersion)
    .message(7, graph)
    .message(8, opset);
}
