import { TokenizerError, TokenizerErrorCode } from './errors.js';

export const WireType = { VARINT: 0, I64: 1, LEN: 2, SGROUP: 3, EGROUP: 4, I32: 5 } as const;

function fail(message: string, offset: number): never {
  throw new TokenizerError(TokenizerErrorCode.INVALID_MODEL_PROTO, `${message} at byte ${offset}`, {
    details: { offset },
  });
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * A minimal protobuf wire-format reader (varint, fixed32, fixed64, length-delimited), enough to
 * decode SentencePiece's `ModelProto`. Every read is bounds-checked; a truncated or garbled
 * buffer raises `TokenizerError('INVALID_MODEL_PROTO')` naming the offset and what was expected.
 */
export class ProtoReader {
  readonly buf: Uint8Array;
  pos: number;
  readonly end: number;
  private readonly view: DataView;

  constructor(buf: Uint8Array, start = 0, end = buf.length) {
    this.buf = buf;
    this.pos = start;
    this.end = end;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  done(): boolean {
    return this.pos >= this.end;
  }

  /** Reads a varint as a JS number (exact up to 2^53; larger values are only skipped or range-checked by callers). */
  varint(): number {
    let result = 0;
    let mul = 1;
    const start = this.pos;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) fail('truncated varint', start);
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return result;
      mul *= 128;
    }
    return fail('varint longer than 10 bytes', start);
  }

  /** Reads a varint-encoded int32 (negative values are sign-extended to 10 bytes on the wire). */
  int32(): number {
    const v = this.varint();
    // Two's complement: values ≥ 2^63 encode negatives; keep the low 32 bits.
    if (v >= 2 ** 31) {
      const low = v % 2 ** 32;
      return low >= 2 ** 31 ? low - 2 ** 32 : low;
    }
    return v;
  }

  bool(): boolean {
    return this.varint() !== 0;
  }

  float(): number {
    if (this.pos + 4 > this.end) fail('truncated fixed32', this.pos);
    const v = this.view.getFloat32(this.pos, true);
    this.pos += 4;
    return v;
  }

  /** Returns [start, end) of a length-delimited field's payload and advances past it. */
  lengthDelimited(): [number, number] {
    const at = this.pos;
    const len = this.varint();
    if (len > this.end - this.pos)
      fail(`length-delimited field of ${len} bytes overruns the buffer (${this.end - this.pos} left)`, at);
    const start = this.pos;
    this.pos += len;
    return [start, this.pos];
  }

  bytes(): Uint8Array {
    const [s, e] = this.lengthDelimited();
    return this.buf.subarray(s, e);
  }

  string(): string {
    const at = this.pos;
    const b = this.bytes();
    try {
      return utf8.decode(b);
    } catch {
      return fail('string field is not valid UTF-8', at);
    }
  }

  /** Reads a field key; returns [fieldNumber, wireType]. */
  key(): [number, number] {
    const at = this.pos;
    const k = this.varint();
    const field = Math.floor(k / 8);
    const wire = k % 8;
    if (field === 0) fail('field number 0', at);
    return [field, wire];
  }

  skip(wire: number): void {
    const at = this.pos;
    switch (wire) {
      case WireType.VARINT:
        this.varint();
        return;
      case WireType.I64:
        if (this.pos + 8 > this.end) fail('truncated fixed64', at);
        this.pos += 8;
        return;
      case WireType.LEN:
        this.lengthDelimited();
        return;
      case WireType.I32:
        if (this.pos + 4 > this.end) fail('truncated fixed32', at);
        this.pos += 4;
        return;
      default:
        fail(`unsupported wire type ${wire}`, at);
    }
  }

  /** Throws unless the field's wire type is the expected one. */
  expect(field: number, wire: number, expected: number, message: string): void {
    if (wire !== expected) fail(`${message}: field ${field} has wire type ${wire}, expected ${expected}`, this.pos);
  }
}
