import { describe, expect, it } from 'vitest';

import { describeBackends, expectNoLeaks } from '@owlet/test-utils';

import { CheckpointError, type CheckpointErrorCode } from './errors.js';
import { DTYPE_SIZE, SAFETENSORS_DTYPES, f32ToBf16Bits, f32ToF16Bits, type SafetensorsDType } from './dtypes.js';
import { readSafetensors } from './safetensors.js';
import { openCheckpoint } from './checkpoint.js';
import { bytesSource, type ByteSource } from './sources.js';
import { prng, rawSafetensors } from '../test/support.js';
import { writeSafetensors, type TensorValues } from './writer.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof CheckpointError)) throw e;
    return e.code;
  }
  return undefined;
}
const expectCode = (fn: () => unknown, code: CheckpointErrorCode) => expect(codeOf(fn)).toBe(code);

const t16 = (dtype = 'F32', begin = 0, end = 16, shape = [4]) => ({ dtype, shape, data_offsets: [begin, end] });

describe('safetensors validation (reliability checklist)', () => {
  it('B1: 0 bytes and 7 bytes → SAFETENSORS_HEADER_TOO_SMALL', () => {
    expectCode(() => readSafetensors(new Uint8Array(0)), 'SAFETENSORS_HEADER_TOO_SMALL');
    expectCode(() => readSafetensors(new Uint8Array(7)), 'SAFETENSORS_HEADER_TOO_SMALL');
  });

  it('B2: N = 100,000,001 and N with high bytes 0xff → HEADER_TOO_LARGE before reading N bytes; N = 100,000,000 passes the size check', async () => {
    const big = rawSafetensors('{}', 0, { n: 100_000_001n });
    expectCode(() => readSafetensors(big), 'SAFETENSORS_HEADER_TOO_LARGE');
    const high = new Uint8Array(16);
    high.fill(0xff, 0, 8);
    expectCode(() => readSafetensors(high), 'SAFETENSORS_HEADER_TOO_LARGE');
    const high2 = new Uint8Array(16);
    high2[7] = 0xff; // 2^63-scale N
    expectCode(() => readSafetensors(high2), 'SAFETENSORS_HEADER_TOO_LARGE');
    // exactly at the limit: not "too large" — it fails only because the file is shorter
    expectCode(
      () => readSafetensors(rawSafetensors('{}', 0, { n: 100_000_000n })),
      'SAFETENSORS_INVALID_HEADER_LENGTH',
    );
    // streamed: the reader never asks for more than the 8 length bytes
    const reads: number[] = [];
    const inner = bytesSource(big, 'big.safetensors');
    const spy: ByteSource = {
      name: inner.name,
      size: inner.size,
      read: (o, l, s) => {
        reads.push(l);
        return inner.read(o, l, s);
      },
      close: () => inner.close(),
    };
    await expect(openCheckpoint(spy)).rejects.toMatchObject({ code: 'SAFETENSORS_HEADER_TOO_LARGE' });
    expect(Math.max(...reads)).toBeLessThanOrEqual(8);
  });

  it('B3: N = 60 with only 8 bytes; 8 + N beyond the file → INVALID_HEADER_LENGTH', () => {
    expectCode(() => readSafetensors(rawSafetensors('', 0, { n: 60n })), 'SAFETENSORS_INVALID_HEADER_LENGTH');
    expectCode(() => readSafetensors(rawSafetensors('{}', 0, { n: 3n })), 'SAFETENSORS_INVALID_HEADER_LENGTH');
  });

  it('B4: header \\xff → INVALID_HEADER; header { → INVALID_HEADER_DESERIALIZATION', () => {
    const ff = new Uint8Array(9);
    ff[0] = 1;
    ff[8] = 0xff;
    expectCode(() => readSafetensors(ff), 'SAFETENSORS_INVALID_HEADER');
    expectCode(() => readSafetensors(rawSafetensors('{')), 'SAFETENSORS_INVALID_HEADER_DESERIALIZATION');
    expectCode(() => readSafetensors(rawSafetensors('[]')), 'SAFETENSORS_INVALID_HEADER_DESERIALIZATION');
    expectCode(() => readSafetensors(rawSafetensors('')), 'SAFETENSORS_INVALID_HEADER_DESERIALIZATION');
    expectCode(
      () => readSafetensors(rawSafetensors('['.repeat(100_000))),
      'SAFETENSORS_INVALID_HEADER_DESERIALIZATION',
    );
  });

  it('B5: overlapping, gapped, not-from-zero and reversed offsets → INVALID_OFFSET', () => {
    const all: Record<string, unknown> = {};
    for (let i = 0; i < 10; i++) all[`t${i}`] = t16();
    expectCode(() => readSafetensors(rawSafetensors(all, 16)), 'SAFETENSORS_INVALID_OFFSET');
    expectCode(
      () => readSafetensors(rawSafetensors({ a: t16('F32', 0, 16), b: t16('F32', 20, 36) }, 36)),
      'SAFETENSORS_INVALID_OFFSET',
    );
    expectCode(() => readSafetensors(rawSafetensors({ a: t16('F32', 4, 20) }, 20)), 'SAFETENSORS_INVALID_OFFSET');
    expectCode(
      () => readSafetensors(rawSafetensors({ a: t16('F32', 0, 16), b: t16('F32', 16, 8) }, 16)),
      'SAFETENSORS_INVALID_OFFSET',
    );
  });

  it('B6: I32 [2,2] with [0,4] → TENSOR_INVALID_INFO', () => {
    expectCode(
      () => readSafetensors(rawSafetensors({ a: t16('I32', 0, 4, [2, 2]) }, 4)),
      'SAFETENSORS_TENSOR_INVALID_INFO',
    );
  });

  it('B7: huge shapes overflow → VALIDATION_OVERFLOW (BigInt arithmetic, never a wrapped size)', () => {
    for (const shape of [
      '[2, 18446744073709551614]',
      '[2, 9223372036854775807]',
      '[281474976710656]',
      '[16777216, 16777216, 16777216]',
    ]) {
      const h = `{"a":{"dtype":"F32","shape":${shape},"data_offsets":[0,8]}}`;
      expectCode(() => readSafetensors(rawSafetensors(h, 8)), 'SAFETENSORS_VALIDATION_OVERFLOW');
    }
    // an offset above 2^48 − 1
    expectCode(
      () => readSafetensors(rawSafetensors('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,281474976710656]}}', 1)),
      'SAFETENSORS_VALIDATION_OVERFLOW',
    );
  });

  it('B8: 16 bytes of trailing junk; 2 bytes missing → METADATA_INCOMPLETE_BUFFER', () => {
    const ok = rawSafetensors({ a: t16() }, 16);
    expect(readSafetensors(ok).keys()).toEqual(['a']);
    const junk = new Uint8Array(ok.length + 16);
    junk.set(ok);
    expectCode(() => readSafetensors(junk), 'SAFETENSORS_METADATA_INCOMPLETE_BUFFER');
    expectCode(() => readSafetensors(ok.subarray(0, ok.length - 2)), 'SAFETENSORS_METADATA_INCOMPLETE_BUFFER');
  });

  it('B9: duplicate keys, __proto__ and constructor are rejected with no prototype change', () => {
    const before = Object.getOwnPropertyNames(Object.prototype).sort();
    expectCode(
      () =>
        readSafetensors(rawSafetensors(`{"a":${JSON.stringify(t16())},"a":${JSON.stringify(t16('F32', 16, 32))}}`, 32)),
      'SAFETENSORS_DUPLICATE_KEY',
    );
    expectCode(
      () => readSafetensors(rawSafetensors(`{"__proto__":${JSON.stringify(t16())}}`, 16)),
      'SAFETENSORS_INVALID_KEY',
    );
    expectCode(
      () => readSafetensors(rawSafetensors(`{"constructor":${JSON.stringify(t16())}}`, 16)),
      'SAFETENSORS_INVALID_KEY',
    );
    expectCode(
      () => readSafetensors(rawSafetensors(`{"__metadata__":{"x":"1","x":"2"}}`)),
      'SAFETENSORS_DUPLICATE_KEY',
    );
    // __proto__ in __metadata__ is an ordinary key of a null-prototype record
    const a = readSafetensors(rawSafetensors(`{"__metadata__":{"__proto__":"p","polluted":"no"}}`));
    expect(Object.getPrototypeOf(a.metadata)).toBe(null);
    expect(Object.getOwnPropertyDescriptor(a.metadata, '__proto__')?.value).toBe('p');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(before);
  });

  it('B10: bad dtypes and offsets that are strings, negative, fractional or null → rejected', () => {
    expectCode(() => readSafetensors(rawSafetensors({ a: t16('F31') }, 16)), 'SAFETENSORS_INVALID_DTYPE');
    expectCode(() => readSafetensors(rawSafetensors({ a: t16('f32') }, 16)), 'SAFETENSORS_INVALID_DTYPE');
    expectCode(
      () => readSafetensors(rawSafetensors({ a: { dtype: 7, shape: [4], data_offsets: [0, 16] } }, 16)),
      'SAFETENSORS_INVALID_HEADER_DESERIALIZATION',
    );
    for (const offs of [
      '["0",16]',
      '[-1,15]',
      '[0,16.0]',
      '[1.5,16]',
      '[null,16]',
      '[0]',
      '[0,16,16]',
      '[0,1e1]',
      '"0,16"',
    ]) {
      const h = `{"a":{"dtype":"F32","shape":[4],"data_offsets":${offs}}}`;
      expectCode(() => readSafetensors(rawSafetensors(h, 16)), 'SAFETENSORS_INVALID_HEADER_DESERIALIZATION');
    }
    for (const shape of ['[-4]', '[4.5]', '["4"]', '4', 'null']) {
      const h = `{"a":{"dtype":"F32","shape":${shape},"data_offsets":[0,16]}}`;
      expectCode(() => readSafetensors(rawSafetensors(h, 16)), 'SAFETENSORS_INVALID_HEADER_DESERIALIZATION');
    }
  });

  it('B11: __metadata__ with a non-string value or a nested object → INVALID_METADATA', () => {
    expectCode(() => readSafetensors(rawSafetensors({ __metadata__: { a: 1 } })), 'SAFETENSORS_INVALID_METADATA');
    expectCode(
      () => readSafetensors(rawSafetensors({ __metadata__: { a: { b: 'c' } } })),
      'SAFETENSORS_INVALID_METADATA',
    );
    expectCode(() => readSafetensors(rawSafetensors({ __metadata__: ['a'] })), 'SAFETENSORS_INVALID_METADATA');
    expect(readSafetensors(rawSafetensors({ __metadata__: { format: 'pt' } })).metadata).toEqual({ format: 'pt' });
  });

  it('B12: zero-sized tensors, scalars, whitespace padding and misaligned data are accepted (data copied)', () => {
    const values = [1.5, -2.25, 3.125];
    const data = new Uint8Array(new Float32Array(values).buffer);
    for (const pad of [0, 1, 2, 3, 5, 7]) {
      // header length N = JSON + pad spaces, so tensor data starts at every alignment
      const header = ` \n\t{"z":{"dtype":"F32","shape":[2,0],"data_offsets":[0,0]},"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"v":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`;
      const file = rawSafetensors(header, data, { pad });
      const a = readSafetensors(file);
      expect(a.info('z')).toEqual({ dtype: 'F32', shape: [2, 0], byteLength: 0 });
      expect(a.array('z').length).toBe(0);
      expect(a.info('s').shape).toEqual([]);
      expect(Array.from(a.array('s'))).toEqual([1.5]);
      expect(Array.from(a.array('v'))).toEqual([-2.25, 3.125]);
      // the returned array owns its memory: writing to it does not touch the file
      a.array('v')[0] = 99;
      expect(Array.from(a.array('v'))).toEqual([-2.25, 3.125]);
      expect(a.array('v').buffer).not.toBe(file.buffer);
    }
  });

  it('B13: F4 tensor with an odd element count → MISALIGNED_SLICE', () => {
    expectCode(
      () => readSafetensors(rawSafetensors({ a: { dtype: 'F4', shape: [3], data_offsets: [0, 2] } }, 2)),
      'SAFETENSORS_MISALIGNED_SLICE',
    );
    // an even count of a format dtype owlet does not load is a typed "unsupported", not a crash
    expectCode(
      () => readSafetensors(rawSafetensors({ a: { dtype: 'F4', shape: [4], data_offsets: [0, 2] } }, 2)),
      'SAFETENSORS_UNSUPPORTED_DTYPE',
    );
  });

  it('B14a: fuzz — 1,000 random byte strings and 1,500 mutations of a valid file give only CheckpointErrors', () => {
    const rnd = prng(1234);
    const valid = writeSafetensors(
      new Map<string, { dtype: SafetensorsDType; shape: number[]; data: TensorValues }>([
        ['w', { dtype: 'F32', shape: [3, 2], data: [1, 2, 3, 4, 5, 6] }],
        ['h', { dtype: 'F16', shape: [2], data: [0.5, -1] }],
        ['i', { dtype: 'I64', shape: [2], data: [7, -8] }],
        ['b', { dtype: 'BOOL', shape: [3], data: [1, 0, 1] }],
      ]),
      { format: 'pt' },
    );
    let typed = 0;
    let ok = 0;
    const attempt = (bytes: Uint8Array) => {
      try {
        const a = readSafetensors(bytes);
        for (const k of a.keys()) a.array(k);
        ok++;
      } catch (e) {
        if (!(e instanceof CheckpointError))
          throw new Error(`untyped ${String(e)} for input ${Buffer.from(bytes).toString('hex').slice(0, 200)}`);
        typed++;
      }
    };
    for (let c = 0; c < 1000; c++) {
      const len = Math.floor(rnd() * 64);
      const b = new Uint8Array(len);
      for (let i = 0; i < len; i++) b[i] = Math.floor(rnd() * 256);
      if (len >= 8 && rnd() < 0.7) new DataView(b.buffer).setBigUint64(0, BigInt(Math.floor(rnd() * (len - 7))), true);
      attempt(b);
    }
    for (let c = 0; c < 1500; c++) {
      const b = valid.slice();
      const kind = rnd();
      if (kind < 0.6) {
        const flips = 1 + Math.floor(rnd() * 4);
        for (let f = 0; f < flips; f++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
        attempt(b);
      } else if (kind < 0.8) {
        attempt(b.subarray(0, Math.floor(rnd() * b.length)));
      } else {
        // printable mutation inside the JSON header
        const n = Number(new DataView(b.buffer).getBigUint64(0, true));
        const at = 8 + Math.floor(rnd() * n);
        b[at] = '0123456789{}[]",:-.eE aF'.charCodeAt(Math.floor(rnd() * 24));
        attempt(b);
      }
    }
    expect(typed + ok).toBe(2500);
    expect(typed).toBeGreaterThan(2000);
  });
});

/** float64 value of an IEEE binary16 bit pattern, from the definition. */
function halfValue(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + m / 1024);
}
/** float64 value of a bfloat16 bit pattern, from the definition. */
function bf16Value(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 7) & 0xff;
  const m = h & 0x7f;
  if (e === 0) return s * m * 2 ** -133;
  if (e === 255) return m ? NaN : s * Infinity;
  return s * 2 ** (e - 127) * (1 + m / 128);
}
const same = (a: number, b: number) => (Number.isNaN(a) && Number.isNaN(b)) || Object.is(a, b);

describe('safetensors writer round trip', () => {
  it('every dtype: write → read gives identical bytes and correctly widened values', () => {
    const all16 = new Uint16Array(65536).map((_, i) => i);
    const f32 = new Float32Array([
      0,
      -0,
      1,
      -1,
      3.4028234663852886e38,
      1.401298464324817e-45,
      Infinity,
      -Infinity,
      NaN,
      Math.PI,
    ]);
    const f64 = new Float64Array([0, -0, 1e300, -1e-300, Math.E, NaN, Infinity]);
    const tensors = new Map<string, { dtype: SafetensorsDType; shape: number[]; data: TensorValues }>([
      ['f32', { dtype: 'F32', shape: [2, 5], data: f32 }],
      ['f64', { dtype: 'F64', shape: [7], data: f64 }],
      ['f16', { dtype: 'F16', shape: [256, 256], data: all16 }],
      ['bf16', { dtype: 'BF16', shape: [65536], data: all16 }],
      ['i64', { dtype: 'I64', shape: [4], data: new BigInt64Array([0n, -1n, 2147483647n, -2147483648n]) }],
      ['i32', { dtype: 'I32', shape: [3], data: new Int32Array([-2147483648, 0, 2147483647]) }],
      ['i16', { dtype: 'I16', shape: [3], data: new Int16Array([-32768, 1, 32767]) }],
      ['i8', { dtype: 'I8', shape: [3], data: new Int8Array([-128, 0, 127]) }],
      ['u8', { dtype: 'U8', shape: [3], data: new Uint8Array([0, 128, 255]) }],
      ['bool', { dtype: 'BOOL', shape: [3], data: [true, false, true] }],
      ['empty', { dtype: 'F16', shape: [0, 4], data: new Uint16Array(0) }],
      ['scalar', { dtype: 'I32', shape: [], data: [42] }],
    ]);
    const file = writeSafetensors(tensors, { format: 'pt', note: 'ü' });
    expect(Number(new DataView(file.buffer).getBigUint64(0, true)) % 8).toBe(0);
    const a = readSafetensors(file);
    expect(a.metadata).toEqual({ format: 'pt', note: 'ü' });
    expect(a.keys()).toEqual([...tensors.keys()]);
    for (const dt of SAFETENSORS_DTYPES) expect([...tensors.values()].some((t) => t.dtype === dt)).toBe(true);
    for (const [k, t] of tensors) {
      const info = a.info(k);
      expect(info.dtype).toBe(t.dtype);
      expect(info.shape).toEqual(t.shape);
      const raw = a.rawBytes(k);
      const expected =
        t.dtype === 'BOOL'
          ? new Uint8Array([1, 0, 1])
          : t.dtype === 'I32' && k === 'scalar'
            ? new Uint8Array(new Int32Array([42]).buffer)
            : new Uint8Array((t.data as ArrayBufferView).buffer);
      expect(Buffer.from(raw).equals(Buffer.from(expected)), k).toBe(true);
      expect(info.byteLength).toBe(t.shape.reduce((x, y) => x * y, 1) * DTYPE_SIZE[t.dtype]);
    }
    const h = a.array('f16');
    const b = a.array('bf16');
    for (let i = 0; i < 65536; i++) {
      if (!same(h[i]!, halfValue(i))) throw new Error(`F16 ${i.toString(16)}: ${h[i]} vs ${halfValue(i)}`);
      if (!same(b[i]!, Math.fround(bf16Value(i))))
        throw new Error(`BF16 ${i.toString(16)}: ${b[i]} vs ${bf16Value(i)}`);
    }
    expect(Array.from(a.array('f64'))).toEqual(Array.from(f64, (x) => Math.fround(x)));
    expect(Array.from(a.array('i64'))).toEqual([0, -1, 2147483647, -2147483648]);
    expect(Array.from(a.array('u8'))).toEqual([0, 128, 255]);
    expect(Array.from(a.array('bool'))).toEqual([1, 0, 1]);
  });

  it('I64 values outside int32 → SAFETENSORS_VALUE_OUT_OF_RANGE naming the tensor', () => {
    const a = readSafetensors(
      writeSafetensors({ big: { dtype: 'I64', shape: [2], data: new BigInt64Array([1n, 1n << 40n]) } }),
    );
    expect(() => a.array('big')).toThrow(/big: I64 element 1 is 1099511627776/);
    expect(codeOf(() => a.array('big'))).toBe('SAFETENSORS_VALUE_OUT_OF_RANGE');
  });

  it('float32 → F16/BF16 rounding is round-to-nearest-even and exact on representable values', () => {
    const rnd = prng(7);
    for (let i = 0; i < 65536; i++) {
      const v = halfValue(i);
      if (Number.isNaN(v)) continue;
      if (f32ToF16Bits([v])[0] !== i) throw new Error(`F16 ${i}: ${v} → ${f32ToF16Bits([v])[0]}`);
      const bv = bf16Value(i);
      if (!Number.isNaN(bv) && f32ToBf16Bits([bv])[0] !== i)
        throw new Error(`BF16 ${i}: ${bv} → ${f32ToBf16Bits([bv])[0]}`);
    }
    // ties: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10 → even (1); 1 + 3·2^-11 → 1 + 2^-9
    expect(halfValue(f32ToF16Bits([1 + 2 ** -11])[0]!)).toBe(1);
    expect(halfValue(f32ToF16Bits([1 + 3 * 2 ** -11])[0]!)).toBe(1 + 2 ** -9);
    expect(halfValue(f32ToF16Bits([65520])[0]!)).toBe(Infinity);
    // random values round to the nearer neighbour (float64 reference)
    for (let i = 0; i < 2000; i++) {
      const x = Math.fround((rnd() - 0.5) * 2 ** Math.floor(rnd() * 40 - 24)); // |x| < 2^15: no overflow
      const h = f32ToF16Bits([x])[0]!;
      const got = halfValue(h);
      for (const nb of [h - 1, h + 1]) {
        if ((nb & 0x8000) !== (h & 0x8000) || nb < 0 || nb > 0xffff) continue;
        const v = halfValue(nb);
        if (Number.isFinite(v)) expect(Math.abs(got - x)).toBeLessThanOrEqual(Math.abs(v - x));
      }
    }
  });

  it('B14b: structured round trip — 300 random files (≤ 8 tensors, rank ≤ 4, dims ≤ 8, every dtype) are bit-identical after write → read → write', () => {
    const rnd = prng(99);
    for (let c = 0; c < 300; c++) {
      const tensors = new Map<string, { dtype: SafetensorsDType; shape: number[]; bytes: Uint8Array }>();
      const count = Math.floor(rnd() * 9);
      for (let t = 0; t < count; t++) {
        const dtype = SAFETENSORS_DTYPES[Math.floor(rnd() * SAFETENSORS_DTYPES.length)]!;
        const shape = Array.from({ length: Math.floor(rnd() * 5) }, () => Math.floor(rnd() * 9));
        const n = shape.reduce((x, y) => x * y, 1) * DTYPE_SIZE[dtype];
        if (n > 4096) continue;
        const bytes = new Uint8Array(n).map(() => Math.floor(rnd() * 256));
        if (dtype === 'BOOL')
          bytes.forEach((_, i) => {
            bytes[i]! &= 1;
          });
        tensors.set(`t.${t}.${dtype}`, { dtype, shape, bytes });
      }
      const file = writeSafetensors(tensors);
      const a = readSafetensors(file);
      const again = writeSafetensors(new Map(a.keys().map((k) => [k, { ...a.info(k), bytes: a.rawBytes(k) }])));
      expect(Buffer.from(again).equals(Buffer.from(file))).toBe(true);
      for (const [k, t] of tensors) expect(Buffer.from(a.rawBytes(k)).equals(Buffer.from(t.bytes))).toBe(true);
    }
  });

  it('writer refuses bad input with typed errors', () => {
    expect(codeOf(() => writeSafetensors({ a: { dtype: 'F32', shape: [2], data: [1] } }))).toBe(
      'SAFETENSORS_INVALID_TENSOR_DATA',
    );
    expect(codeOf(() => writeSafetensors({ a: { dtype: 'U8', shape: [1], data: [256] } }))).toBe(
      'SAFETENSORS_INVALID_TENSOR_DATA',
    );
    expect(codeOf(() => writeSafetensors([['constructor', { dtype: 'U8', shape: [1], data: [1] }]]))).toBe(
      'SAFETENSORS_INVALID_KEY',
    );
    expect(codeOf(() => writeSafetensors([['__metadata__', { dtype: 'U8', shape: [1], data: [1] }]]))).toBe(
      'SAFETENSORS_INVALID_KEY',
    );
    expect(
      codeOf(() =>
        writeSafetensors([
          ['x', { dtype: 'U8', shape: [1], data: [1] }],
          ['x', { dtype: 'U8', shape: [1], data: [1] }],
        ]),
      ),
    ).toBe('SAFETENSORS_DUPLICATE_KEY');
    expect(codeOf(() => writeSafetensors({ a: { dtype: 'F31' as SafetensorsDType, shape: [1], data: [1] } }))).toBe(
      'SAFETENSORS_INVALID_DTYPE',
    );
    expect(codeOf(() => writeSafetensors({}, { a: 1 as unknown as string }))).toBe('SAFETENSORS_INVALID_METADATA');
  });
});

describeBackends('SafetensorsArchive tensors', ({ it }) => {
  it('tensor() gives float32/int32 tensors with the widened values and leaks nothing', async () => {
    const file = writeSafetensors({
      h: { dtype: 'F16', shape: [2, 2], data: [0.5, -1.5, 2, 65504] },
      b: { dtype: 'BF16', shape: [3], data: [1, -3.5, 1024] },
      i: { dtype: 'I64', shape: [2], data: [5, -6] },
      u: { dtype: 'BOOL', shape: [2], data: [false, true] },
    });
    const a = readSafetensors(file);
    await expectNoLeaks(async () => {
      const h = a.tensor('h');
      const b = a.tensor('b');
      const i = a.tensor('i');
      const u = a.tensor('u');
      expect([h.dtype, b.dtype, i.dtype, u.dtype]).toEqual(['float32', 'float32', 'int32', 'int32']);
      expect(h.shape).toEqual([2, 2]);
      expect(Array.from(await h.data())).toEqual([0.5, -1.5, 2, 65504]);
      expect(Array.from(await b.data())).toEqual([1, -3.5, 1024]);
      expect(Array.from(await i.data())).toEqual([5, -6]);
      expect(Array.from(await u.data())).toEqual([0, 1]);
      for (const t of [h, b, i, u]) t.dispose();
    });
  });
});
