import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, copyFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { deflateRawSync } from 'node:zlib';

import { afterAll, describe, expect, it as plainIt } from 'vitest';

import { describeBackends, expectNoLeaks, fixturePath, loadFixtureJson } from '@owlet/test-utils';

import { CheckpointError } from './errors.js';
import { readSafetensors } from './safetensors.js';
import { openCheckpoint, type CheckpointProgress } from './checkpoint.js';
import {
  convertBinToSafetensors,
  createSafetensorsFileWriter,
  writeFileAtomic,
  writeSafetensorsFile,
} from './node-api.js';
import { blobFolder, bytesSource } from './sources.js';
import { TorchBinFile } from './torch-bin.js';
import { PickleWriter, buildTorchFile, prng } from '../test/support.js';
import { writeSafetensors } from './writer.js';

const tmpRoot = mkdtempSync(join(tmpdir(), 'owlet-ckpt-test-'));
afterAll(() => rmSync(tmpRoot, { recursive: true, force: true }));
let dirCount = 0;
const tmpDir = () => {
  const d = join(tmpRoot, `d${dirCount++}`);
  mkdirSync(d);
  return d;
};

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (e) {
    if (!(e instanceof CheckpointError)) throw e;
    return e.code;
  }
  return undefined;
}

/** A tiny sharded safetensors checkpoint in a fresh folder. */
function shardedSafetensors(): {
  dir: string;
  index: { metadata: { total_size: number }; weight_map: Record<string, string> };
} {
  const dir = tmpDir();
  writeFileSync(
    join(dir, 'model-00001-of-00002.safetensors'),
    writeSafetensors({ a: { dtype: 'F32', shape: [2], data: [1, 2] }, b: { dtype: 'F16', shape: [1], data: [3] } }),
  );
  writeFileSync(
    join(dir, 'model-00002-of-00002.safetensors'),
    writeSafetensors({ c: { dtype: 'I32', shape: [3], data: [4, 5, 6] } }),
  );
  const index = {
    metadata: { total_size: 8 + 2 + 12 },
    weight_map: {
      a: 'model-00001-of-00002.safetensors',
      b: 'model-00001-of-00002.safetensors',
      c: 'model-00002-of-00002.safetensors',
    },
  };
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify(index));
  return { dir, index };
}

/** A fetch serving files from memory, with or without Range support, recording every request. */
function fakeFetch(files: Map<string, Uint8Array>, ranges: boolean) {
  const requests: { url: string; range: string | null; method: string; credentials: RequestCredentials | undefined }[] =
    [];
  const f = (async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = String(input);
    const headers = new Headers(init?.headers);
    requests.push({ url, range: headers.get('range'), method: init?.method ?? 'GET', credentials: init?.credentials });
    const name = decodeURIComponent(new URL(url).pathname.split('/').pop()!);
    const body = new URL(url).pathname.startsWith('/ckpt/') ? files.get(name) : undefined;
    if (!body) return new Response('not found', { status: 404 });
    if (init?.method === 'HEAD')
      return new Response(null, { status: 200, headers: { 'content-length': String(body.length) } });
    const range = headers.get('range');
    if (ranges && range) {
      const m = /^bytes=(\d+)-(\d+)$/.exec(range)!;
      const a = Number(m[1]);
      const b = Math.min(Number(m[2]), body.length - 1);
      return new Response(body.slice(a, b + 1), {
        status: 206,
        headers: { 'content-range': `bytes ${a}-${b}/${body.length}` },
      });
    }
    return new Response(body.slice(), { status: 200, headers: { 'content-length': String(body.length) } });
  }) as typeof fetch;
  return { fetch: f, requests };
}

describe('sharded index', () => {
  plainIt('B15: unsafe shard names are rejected before any open or fetch', async () => {
    const bad = [
      '../x.safetensors',
      '/etc/passwd',
      'a/b.safetensors',
      '..\\x.safetensors',
      '%2e%2e/x.safetensors',
      '%2e%2e%2fx.safetensors',
      'https://evil/x.safetensors',
      'C:x.safetensors',
      '.hidden.safetensors',
      'x\u2215y.safetensors',
      '',
    ];
    for (const name of bad) {
      const files = new Map<string, Uint8Array>([
        [
          'model.safetensors.index.json',
          new TextEncoder().encode(JSON.stringify({ weight_map: { a: 'ok.safetensors', b: name } })),
        ],
        ['ok.safetensors', writeSafetensors({ a: { dtype: 'U8', shape: [1], data: [1] } })],
      ]);
      const { fetch, requests } = fakeFetch(files, true);
      expect(await codeOf(openCheckpoint('https://host/ckpt/', { fetch })), name).toBe('INDEX_UNSAFE_SHARD_NAME');
      // only the index itself was requested (HEAD probe + its read), never a shard
      expect(
        requests.every((r) => r.url.endsWith('model.safetensors.index.json')),
        JSON.stringify(requests),
      ).toBe(true);
      // the same on disk
      const dir = tmpDir();
      writeFileSync(join(dir, 'model.safetensors.index.json'), files.get('model.safetensors.index.json')!);
      expect(await codeOf(openCheckpoint(dir))).toBe('INDEX_UNSAFE_SHARD_NAME');
    }
  });

  plainIt(
    'B16: missing tensor, tensor in two shards, missing shard and total_size mismatch are rejected with the tensor name',
    async () => {
      const { dir, index } = shardedSafetensors();
      const ck = await openCheckpoint(dir);
      expect(ck.entries().map((e) => e.key)).toEqual(['a', 'b', 'c']);
      await ck.close();
      const variant = async (idx: unknown, mutate?: (d: string) => void) => {
        const d = tmpDir();
        for (const f of readdirSync(dir)) copyFileSync(join(dir, f), join(d, f));
        writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify(idx));
        mutate?.(d);
        try {
          await openCheckpoint(d);
        } catch (e) {
          if (!(e instanceof CheckpointError)) throw e;
          return e;
        }
        throw new Error('expected a CheckpointError');
      };
      let e = await variant({
        ...index,
        weight_map: { ...index.weight_map, ghost: 'model-00002-of-00002.safetensors' },
      });
      expect([e.code, e.message.includes('ghost')]).toEqual(['INDEX_TENSOR_MISSING', true]);
      e = await variant(index, (d) =>
        writeFileSync(
          join(d, 'model-00002-of-00002.safetensors'),
          writeSafetensors({
            c: { dtype: 'I32', shape: [3], data: [4, 5, 6] },
            a: { dtype: 'F32', shape: [2], data: [1, 2] },
          }),
        ),
      );
      expect([e.code, e.message.includes(' a ') || e.message.startsWith('a ')]).toEqual([
        'INDEX_TENSOR_DUPLICATED',
        true,
      ]);
      e = await variant(index, (d) => rmSync(join(d, 'model-00002-of-00002.safetensors')));
      expect([e.code, e.message.includes('model-00002-of-00002.safetensors'), e.message.includes('c')]).toEqual([
        'INDEX_SHARD_MISSING',
        true,
        true,
      ]);
      e = await variant({ ...index, metadata: { total_size: 23 } });
      expect(e.code).toBe('INDEX_TOTAL_SIZE_MISMATCH');
      expect(e.message).toMatch(/23.*22/);
      e = await variant(
        `{"weight_map":{"a":"model-00001-of-00002.safetensors","a":"model-00002-of-00002.safetensors"}}` as unknown as object,
        (d) =>
          writeFileSync(
            join(d, 'model.safetensors.index.json'),
            `{"weight_map":{"a":"model-00001-of-00002.safetensors","a":"model-00002-of-00002.safetensors"}}`,
          ),
      );
      expect([e.code, e.message.includes('"a"')]).toEqual(['INDEX_TENSOR_DUPLICATED', true]);
      e = await variant({ ...index, weight_map: { a: index.weight_map.a, c: index.weight_map.c } });
      expect([e.code, e.message.includes('b')]).toEqual(['INDEX_TENSOR_UNLISTED', true]);
    },
  );
});

describe('sources and progress', () => {
  plainIt(
    'URL with Range support: only header and tensor bytes travel; progress events in transformers.js shape; no credentials added',
    async () => {
      const { dir } = shardedSafetensors();
      const files = new Map(readdirSync(dir).map((f) => [f, new Uint8Array(readFileSync(join(dir, f)))]));
      const { fetch, requests } = fakeFetch(files, true);
      const events: CheckpointProgress[] = [];
      const ck = await openCheckpoint('https://host/ckpt/', { fetch, onProgress: (e) => events.push(e) });
      const got: Record<string, number[]> = {};
      for await (const [k, arr] of ck.arrays()) got[k] = Array.from(arr);
      expect(got).toEqual({ a: [1, 2], b: [3], c: [4, 5, 6] });
      expect(requests.filter((r) => r.method === 'GET').every((r) => r.range !== null)).toBe(true);
      expect(requests.every((r) => r.credentials === undefined)).toBe(true);
      const statuses = events.map((e) => `${e.status}:${'file' in e ? e.file : ''}`);
      expect(statuses).toContain('initiate:model-00001-of-00002.safetensors');
      expect(statuses).toContain('download:model-00002-of-00002.safetensors');
      expect(statuses.filter((s) => s.startsWith('done:'))).toEqual([
        'done:model-00001-of-00002.safetensors',
        'done:model-00002-of-00002.safetensors',
      ]);
      const last = events.filter((e) => e.status === 'progress').pop() as Extract<
        CheckpointProgress,
        { status: 'progress' }
      >;
      expect([last.loaded, last.total, last.progress]).toEqual([12, 12, 100]);
      await ck.close();
    },
  );

  plainIt('URL without Range support falls back to one download; a 404 folder gives CHECKPOINT_NOT_FOUND', async () => {
    const { dir } = shardedSafetensors();
    const files = new Map(readdirSync(dir).map((f) => [f, new Uint8Array(readFileSync(join(dir, f)))]));
    const { fetch } = fakeFetch(files, false);
    const ck = await openCheckpoint('https://host/ckpt/model.safetensors.index.json', { fetch });
    expect(Array.from(await ck.array('c'))).toEqual([4, 5, 6]);
    await ck.close();
    expect(await codeOf(openCheckpoint('https://host/elsewhere/', { fetch }))).toBe('CHECKPOINT_NOT_FOUND');
  });

  plainIt('Blob/File folder and ArrayBuffer sources; abort signal stops streaming with ABORTED', async () => {
    const { dir } = shardedSafetensors();
    const blobs = readdirSync(dir).map((f) => new File([readFileSync(join(dir, f))], f));
    const ck = await openCheckpoint(blobs);
    expect(ck.entries().map((e) => [e.key, e.dtype, e.shape])).toEqual([
      ['a', 'F32', [2]],
      ['b', 'F16', [1]],
      ['c', 'I32', [3]],
    ]);
    const ctrl = new AbortController();
    const seen: string[] = [];
    const run = (async () => {
      for await (const [k] of ck.arrays({ signal: ctrl.signal })) {
        seen.push(k);
        ctrl.abort();
      }
    })();
    expect(await codeOf(run)).toBe('ABORTED');
    expect(seen).toEqual(['a']);
    const single = await openCheckpoint(
      new Uint8Array(readFileSync(join(dir, 'model-00002-of-00002.safetensors'))).buffer,
    );
    expect(single.format).toBe('safetensors');
    expect(single.files).toEqual(['memory']);
    const folder = blobFolder(new Map([['pytorch_model.bin', readFileSync(fixturePath('torch_bin/edge_cases.bin'))]]));
    expect((await openCheckpoint(folder)).format).toBe('pytorch');
  });
});

function expectBitExactAgainst(refPath: string, got: Map<string, Uint8Array>) {
  const ref = readSafetensors(readFileSync(refPath));
  expect([...got.keys()].sort()).toEqual(ref.keys().sort());
  for (const k of ref.keys()) {
    if (!Buffer.from(got.get(k)!).equals(Buffer.from(ref.rawBytes(k)))) throw new Error(`${k} differs from ${refPath}`);
  }
}

describe('PyTorch .bin reader', () => {
  plainIt('owl2_tiny f32/f16/bf16 shards and owl1_tiny load bit-exactly against their safetensors twins', async () => {
    const cases: [string, string][] = [
      ['torch_bin/owl2_tiny_f32', 'owl2_tiny/model.safetensors'],
      ['torch_bin/owl2_tiny_f16', 'torch_bin/owl2_tiny_f16.safetensors'],
      ['torch_bin/owl2_tiny_bf16', 'torch_bin/owl2_tiny_bf16.safetensors'],
      ['torch_bin/owl1_tiny_f32', 'owl1_tiny/model.safetensors'],
    ];
    for (const [bin, st] of cases) {
      const ck = await openCheckpoint(fixturePath(bin));
      expect(ck.format).toBe('pytorch');
      const ref = readSafetensors(readFileSync(fixturePath(st)));
      const got = new Map<string, Uint8Array>();
      for await (const [e, raw] of ck.raw()) {
        expect(e.dtype, e.key).toBe(ref.info(e.key).dtype);
        expect(e.shape, e.key).toEqual(ref.info(e.key).shape);
        got.set(e.key, raw.slice());
      }
      expectBitExactAgainst(fixturePath(st), got);
      // widened values equal the twin's widened values exactly
      for await (const [k, arr] of ck.arrays({ keys: ref.keys().slice(0, 3) })) {
        expect(Buffer.from(arr.buffer).equals(Buffer.from(ref.array(k).buffer))).toBe(true);
      }
      await ck.close();
    }
  });

  plainIt(
    'edge_cases.bin: views, offsets, shared storages, 0-d, empty, int/bool/half/bf16 and a Parameter match the expected file and json',
    async () => {
      const ck = await openCheckpoint(fixturePath('torch_bin/edge_cases.bin'));
      const ref = readSafetensors(readFileSync(fixturePath('torch_bin/edge_cases.expected.safetensors')));
      const meta =
        loadFixtureJson<Record<string, { dtype: string; shape: number[]; stride: number[]; storage_offset: number }>>(
          'torch_bin/edge_cases.json',
        );
      const torchName: Record<string, string> = {
        F32: 'float32',
        F16: 'float16',
        BF16: 'bfloat16',
        I64: 'int64',
        I32: 'int32',
        U8: 'uint8',
        BOOL: 'bool',
      };
      expect(
        ck
          .entries()
          .map((e) => e.key)
          .sort(),
      ).toEqual(Object.keys(meta).sort());
      for await (const [k, arr, e] of ck.arrays()) {
        expect(torchName[e.dtype], k).toBe(meta[k]!.dtype);
        expect(e.shape, k).toEqual(meta[k]!.shape);
        // (the expected file stores the 0-d scalar as [1]; the json and torch say [])
        expect(ref.info(k).shape.reduce((x, y) => x * y, 1)).toBe(meta[k]!.shape.reduce((x, y) => x * y, 1));
        const want = ref.array(k);
        expect(arr.constructor).toBe(want.constructor);
        expect(
          Buffer.from(arr.buffer, arr.byteOffset, arr.byteLength).equals(
            Buffer.from(want.buffer, want.byteOffset, want.byteLength),
          ),
          k,
        ).toBe(true);
      }
      const bin = await TorchBinFile.open(
        bytesSource(readFileSync(fixturePath('torch_bin/edge_cases.bin')), 'edge_cases.bin'),
      );
      const byKey = new Map(bin.tensors.map((t) => [t.key, t]));
      for (const [k, m] of Object.entries(meta)) {
        expect(byKey.get(k)!.stride, k).toEqual(m.stride);
        expect(byKey.get(k)!.storageOffset, k).toBe(m.storage_offset);
      }
      expect(byKey.get('param')!.isParameter).toBe(true);
      expect(byKey.get('base')!.storage).toBe(byKey.get('row_slice_view')!.storage);
    },
  );

  const storage = (n: number) => new Uint8Array(new Float32Array(Array.from({ length: n }, (_, i) => i + 0.5)).buffer);
  const pickleOf = (body: (w: PickleWriter) => void) => {
    const w = new PickleWriter().proto().op('}').op('(');
    body(w);
    return w.op('u').op('.').build();
  };

  plainIt('deflated members and ZIP64 records are read; a strided view gathers correctly', async () => {
    const pk = pickleOf((w) => w.str('t').tensor('FloatStorage', '0', 12, 1, [2, 3], [1, 4]));
    const expected = [1.5, 5.5, 9.5, 2.5, 6.5, 10.5];
    for (const opts of [{}, { zip64: true }, { deflate: (d: Uint8Array) => new Uint8Array(deflateRawSync(d)) }]) {
      const ck = await openCheckpoint(buildTorchFile(pk, { '0': storage(12) }, opts));
      expect(Array.from(await ck.array('t'))).toEqual(expected);
    }
  });

  plainIt('the unpickler refuses anything beyond a state dict with typed errors and executes nothing', async () => {
    const cases: [string, Uint8Array, string][] = [
      [
        'os.system',
        new PickleWriter().proto().global('os', 'system').str('echo pwned').op('\x85').op('R').op('.').build(),
        'PICKLE_FORBIDDEN',
      ],
      [
        'builtins.eval',
        new PickleWriter().proto().global('builtins', 'eval').str('1').op('\x85').op('R').op('.').build(),
        'PICKLE_FORBIDDEN',
      ],
      [
        'INST opcode',
        new PickleWriter()
          .proto()
          .bytes(0x69)
          .bytes(...new TextEncoder().encode('os\nsystem\n'))
          .op('.')
          .build(),
        'PICKLE_FORBIDDEN',
      ],
      ['protocol 0 INT', new PickleWriter().bytes(0x49, 0x31, 0x0a).op('.').build(), 'PICKLE_FORBIDDEN'],
      ['not a dict', new PickleWriter().proto().op(']').op('.').build(), 'PICKLE_FORBIDDEN'],
      ['non-tensor value', pickleOf((w) => w.str('x').int(3)), 'PICKLE_FORBIDDEN'],
      [
        'storage called',
        new PickleWriter().proto().global('torch', 'FloatStorage').op(')').op('R').op('.').build(),
        'PICKLE_FORBIDDEN',
      ],
      [
        'truncated',
        pickleOf((w) => w.str('t').tensor('FloatStorage', '0', 12, 0, [12], [1])).subarray(0, 40),
        'PICKLE_INVALID',
      ],
      ['bad memo', new PickleWriter().proto().bytes(0x68, 9).op('.').build(), 'PICKLE_INVALID'],
      [
        'view past storage',
        pickleOf((w) => w.str('t').tensor('FloatStorage', '0', 12, 8, [5], [1])),
        'TORCH_INVALID_TENSOR',
      ],
      [
        'storage size lie',
        pickleOf((w) => w.str('t').tensor('FloatStorage', '0', 13, 0, [12], [1])),
        'TORCH_INVALID_TENSOR',
      ],
      [
        'missing storage member',
        pickleOf((w) => w.str('t').tensor('FloatStorage', '7', 12, 0, [12], [1])),
        'ZIP_ENTRY_NOT_FOUND',
      ],
      [
        'complex storage',
        pickleOf((w) => w.str('t').tensor('ComplexFloatStorage', '0', 6, 0, [6], [1])),
        'PICKLE_FORBIDDEN',
      ],
    ];
    for (const [what, pk, code] of cases) {
      expect(await codeOf(openCheckpoint(buildTorchFile(pk, { '0': storage(12) }))), what).toBe(code);
    }
    expect(readdirSync(tmpRoot)).not.toContain('pwned');
    // the globals table is keyed by module and name: the rebuilder's dotted name split elsewhere is refused
    // where it is named (not later, for its arguments)
    for (const [mod, name] of [
      ['torch', '_utils._rebuild_tensor_v2'],
      ['collections', '_rebuild_tensor_v2'],
    ] as const) {
      const pk = new PickleWriter().proto().global(mod, name).op(')').op('R').op('.').build();
      const err = await openCheckpoint(buildTorchFile(pk, { '0': storage(12) })).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(err?.message, `${mod}.${name}`).toContain(`global ${mod}.${name} is not allowed`);
    }
    // legacy (pre-1.6) torch files are recognised and refused with a clear code
    expect(
      await codeOf(
        openCheckpoint(
          bytesSource(
            new Uint8Array([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]),
            'old.bin',
          ),
        ),
      ),
    ).toBe('TORCH_UNSUPPORTED_FORMAT');
  });

  plainIt('fuzz: 1,500 mutations of edge_cases.bin and 500 of a data.pkl give only CheckpointErrors', async () => {
    const base = new Uint8Array(readFileSync(fixturePath('torch_bin/edge_cases.bin')));
    const rnd = prng(42);
    let typed = 0;
    const attempt = async (b: Uint8Array) => {
      try {
        const ck = await openCheckpoint(b);
        for await (const _ of ck.arrays()) void _;
      } catch (e) {
        if (!(e instanceof CheckpointError)) throw new Error(`untyped error ${String(e)}`);
        typed++;
      }
    };
    for (let c = 0; c < 1500; c++) {
      const b = base.slice();
      const mode = rnd();
      if (mode < 0.5) {
        // hit the pickle region most of the time (first ~1.3 KB)
        for (let f = 0; f < 1 + Math.floor(rnd() * 3); f++)
          b[Math.floor(rnd() * (rnd() < 0.7 ? 1300 : b.length))] = Math.floor(rnd() * 256);
        await attempt(b);
      } else if (mode < 0.8) {
        await attempt(b.subarray(0, Math.floor(rnd() * b.length)));
      } else {
        for (let f = 0; f < 4; f++) b[b.length - 1 - Math.floor(rnd() * 120)] = Math.floor(rnd() * 256);
        await attempt(b);
      }
    }
    const pk = pickleOf((w) =>
      w.str('t').tensor('FloatStorage', '0', 12, 1, [2, 3], [1, 4]).str('u').tensor('HalfStorage', '1', 4, 0, [4], [1]),
    );
    for (let c = 0; c < 500; c++) {
      const p = pk.slice();
      p[Math.floor(rnd() * p.length)] = Math.floor(rnd() * 256);
      await attempt(buildTorchFile(p, { '0': storage(12), '1': new Uint8Array(8) }));
    }
    expect(typed).toBeGreaterThan(1000);
  });
});

describe('conversion .bin → safetensors', () => {
  plainIt(
    'sharded owl2_tiny_bf16 converts to model-k-of-3.safetensors + index; output equals the input bit for bit',
    async () => {
      const dst = join(tmpDir(), 'out');
      const events: CheckpointProgress[] = [];
      const res = await convertBinToSafetensors(fixturePath('torch_bin/owl2_tiny_bf16'), dst, {
        onProgress: (e) => events.push(e),
      });
      expect(res.files).toEqual(['model-1-of-3.safetensors', 'model-2-of-3.safetensors', 'model-3-of-3.safetensors']);
      expect(res.index).toBe('model.safetensors.index.json');
      expect(readdirSync(dst).sort()).toEqual([...res.files, 'model.safetensors.index.json'].sort());
      const idx = JSON.parse(readFileSync(join(dst, 'model.safetensors.index.json'), 'utf8')) as {
        metadata: { total_size: number };
        weight_map: Record<string, string>;
      };
      const srcIdx = loadFixtureJson<{ metadata: { total_size: number }; weight_map: Record<string, string> }>(
        'torch_bin/owl2_tiny_bf16/pytorch_model.bin.index.json',
      );
      expect(idx.metadata.total_size).toBe(srcIdx.metadata.total_size);
      for (const [k, v] of Object.entries(srcIdx.weight_map))
        expect(idx.weight_map[k]).toBe(v.replace('pytorch_model', 'model').replace('.bin', '.safetensors'));
      const ck = await openCheckpoint(dst);
      expect(ck.format).toBe('safetensors');
      const got = new Map<string, Uint8Array>();
      for await (const [e, raw] of ck.raw()) got.set(e.key, raw.slice());
      expectBitExactAgainst(fixturePath('torch_bin/owl2_tiny_bf16.safetensors'), got);
      expect(events.some((e) => e.status === 'done')).toBe(true);
      await ck.close();
    },
  );

  plainIt('single edge_cases.bin converts to one file whose values equal the .bin reading', async () => {
    const src = tmpDir();
    copyFileSync(fixturePath('torch_bin/edge_cases.bin'), join(src, 'pytorch_model.bin'));
    const dst = tmpDir();
    const res = await convertBinToSafetensors(src, dst);
    expect(res.files).toEqual(['model.safetensors']);
    expect(res.index).toBeUndefined();
    const out = readSafetensors(readFileSync(join(dst, 'model.safetensors')));
    expect(out.metadata).toEqual({ format: 'pt' });
    const bin = await openCheckpoint(src);
    for await (const [e, raw] of bin.raw())
      expect(Buffer.from(out.rawBytes(e.key)).equals(Buffer.from(raw)), e.key).toBe(true);
  });

  plainIt('F1: a failed or aborted write never leaves a file under the final name', async () => {
    const dst = tmpDir();
    const w = await createSafetensorsFileWriter(join(dst, 'model.safetensors'), [
      { key: 'a', dtype: 'F32', shape: [2] },
      { key: 'b', dtype: 'F32', shape: [1] },
    ]);
    await w.write('a', new Uint8Array(8));
    expect(readdirSync(dst).some((f) => f === 'model.safetensors')).toBe(false);
    expect(await codeOf(w.write('a', new Uint8Array(8)))).toBe('SAFETENSORS_INVALID_TENSOR_DATA');
    expect(await codeOf(w.commit())).toBe('SAFETENSORS_INVALID_TENSOR_DATA');
    expect(readdirSync(dst)).toEqual([]);
    // an aborted conversion (signal) leaves neither shards nor index nor temp files behind
    const ctrl = new AbortController();
    const out = join(tmpDir(), 'o');
    const p = convertBinToSafetensors(fixturePath('torch_bin/owl2_tiny_f16'), out, {
      signal: ctrl.signal,
      onProgress: (e) => {
        if (e.status === 'progress' && e.loaded > 0) ctrl.abort();
      },
    });
    expect(await codeOf(p)).toBe('ABORTED');
    expect(readdirSync(dirname(out))).toEqual([]); // no output folder, no temporary, no lock
  });

  plainIt(
    'issue 23: a conversion into a folder with an earlier one is refused, or replaced whole with force',
    async () => {
      const parent = tmpDir();
      const dst = join(parent, 'out');
      const first = await convertBinToSafetensors(fixturePath('torch_bin/owl2_tiny_f16'), dst);
      // A stale shard of an older, longer checkpoint sits beside it.
      writeFileSync(join(dst, 'model-4-of-4.safetensors'), 'stale');
      const before = readdirSync(dst).sort();
      expect(await codeOf(convertBinToSafetensors(fixturePath('torch_bin/owl2_tiny_bf16'), dst))).toBe(
        'DESTINATION_NOT_EMPTY',
      );
      expect(readdirSync(dst).sort()).toEqual(before);
      const second = await convertBinToSafetensors(fixturePath('torch_bin/owl2_tiny_bf16'), dst, { force: true });
      expect(readdirSync(dst).sort()).toEqual([...second.files, 'model.safetensors.index.json'].sort());
      expect(readdirSync(parent)).toEqual(['out']);
      const ck = await openCheckpoint(dst);
      const got = new Map<string, Uint8Array>();
      for await (const [e, raw] of ck.raw()) got.set(e.key, raw.slice());
      expectBitExactAgainst(fixturePath('torch_bin/owl2_tiny_bf16.safetensors'), got);
      await ck.close();
      expect(first.files).toEqual(second.files);
    },
  );

  plainIt('rawChunks: pieces of at most chunkBytes join to the raw bytes (.bin and safetensors)', async () => {
    const st = tmpDir();
    await convertBinToSafetensors(fixturePath('torch_bin/owl2_tiny_f16'), join(st, 'o'));
    for (const src of [
      fixturePath('torch_bin/owl2_tiny_f16'),
      fixturePath('torch_bin/edge_cases.bin'),
      join(st, 'o'),
    ]) {
      const ck = await openCheckpoint(src);
      const whole = new Map<string, Buffer>();
      for await (const [e, raw] of ck.raw()) whole.set(e.key, Buffer.from(raw));
      const parts = new Map<string, Buffer[]>();
      let lasts = 0;
      for await (const [e, piece, last] of ck.rawChunks({ chunkBytes: 4093 })) {
        expect(piece.byteLength).toBeLessThanOrEqual(4093);
        parts.set(e.key, [...(parts.get(e.key) ?? []), Buffer.from(piece)]);
        if (last) lasts++;
      }
      expect(lasts).toBe(whole.size);
      for (const [k, v] of whole) expect(Buffer.concat(parts.get(k) ?? []).equals(v), k).toBe(true);
      await ck.close();
    }
  });

  plainIt('copySideFiles copies config/tokenizer files into the same all-or-nothing folder', async () => {
    const src = tmpDir();
    for (const f of readdirSync(fixturePath('torch_bin/owl2_tiny_f16')))
      copyFileSync(join(fixturePath('torch_bin/owl2_tiny_f16'), f), join(src, f));
    writeFileSync(join(src, 'config.json'), '{}');
    writeFileSync(join(src, 'tokenizer.model'), 'x');
    writeFileSync(join(src, 'notes.bin'), 'not copied');
    const dst = join(tmpDir(), 'o');
    const r = await convertBinToSafetensors(src, dst, { copySideFiles: true });
    expect(r.copied).toEqual(['config.json', 'tokenizer.model']);
    expect(readFileSync(join(dst, 'config.json'), 'utf8')).toBe('{}');
  });

  plainIt("F1: a single-file write sweeps the *.tmp a killed writer left; a live writer's stays", async () => {
    const dir = tmpDir();
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
    const stale = `model.safetensors.${dead}.0badcafe.tmp`;
    const live = `model.safetensors.${process.ppid}.0badcafe.tmp`;
    writeFileSync(join(dir, stale), new Uint8Array(1000));
    writeFileSync(join(dir, live), new Uint8Array(10));
    await writeSafetensorsFile(
      join(dir, 'model.safetensors'),
      new Map([['a', { dtype: 'F32', shape: [1], data: [1] }]]),
    );
    expect(readdirSync(dir).sort()).toEqual([live, 'model.safetensors'].sort());
    await writeFileAtomic(join(dir, 'x.json'), '{}');
    expect(readFileSync(join(dir, 'x.json'), 'utf8')).toBe('{}');
  });
});

/** Plain parameters (no layer that may keep a compute layout of its own). */

describeBackends('torch .bin reader', ({ it }) => {
  it('loads owl2_tiny .bin f16 shards widened exactly as the twin safetensors', async () => {
    const ck = await openCheckpoint(fixturePath('torch_bin/owl2_tiny_f16'));
    const ref = readSafetensors(readFileSync(fixturePath('torch_bin/owl2_tiny_f16.safetensors')));
    await expectNoLeaks(async () => {
      for await (const [k, t] of ck.tensors({ keys: ['model.embed_tokens.weight', 'lm_head.weight'] })) {
        expect(t.dtype).toBe('float32');
        expect(Array.from(await t.data())).toEqual(Array.from(ref.array(k)));
        t.dispose();
      }
    });
    await ck.close();
  });
});
