import { readFileSync } from 'node:fs';

import type { SafetensorsArchive } from './index.js';
import { describeBackends, expectNoLeaks, fixturePath, loadFixture, loadFixtureJson } from '@owlet/test-utils';
import { expect } from 'vitest';

/** Independent float64 reading of an F32 tensor straight from the file bytes (DataView, no typed-array views). */
function referenceF32(path: string, key: string): { shape: number[]; values: number[] } {
  const buf = readFileSync(path);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n = Number(dv.getBigUint64(0, true));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const e = header[key]!;
  const values: number[] = [];
  for (let o = e.data_offsets[0]; o < e.data_offsets[1]; o += 4) values.push(dv.getFloat32(8 + n + o, true));
  return { shape: e.shape, values };
}

describeBackends('readSafetensors on fixtures', ({ it }) => {
  it('loads owl2_tiny/model.safetensors: every key, shape and value matches an independent reading', async () => {
    const archive: SafetensorsArchive = loadFixture('owl2_tiny/model.safetensors');
    const path = fixturePath('owl2_tiny/model.safetensors');
    const keys = archive.keys();
    expect(keys.length).toBeGreaterThan(10);
    expect(keys).toContain('model.embed_tokens.weight');
    for (const key of keys) {
      const info = archive.info(key);
      expect(info.dtype).toBe('F32');
      const ref = referenceF32(path, key);
      expect(info.shape).toEqual(ref.shape);
      const arr = archive.array(key);
      expect(arr).toBeInstanceOf(Float32Array);
      expect(Array.from(arr)).toEqual(ref.values);
    }
    await expectNoLeaks(async () => {
      const t = archive.tensor('model.embed_tokens.weight');
      expect(t.dtype).toBe('float32');
      expect(t.shape).toEqual(archive.info('model.embed_tokens.weight').shape);
      const data = await t.data();
      expect(Array.from(data)).toEqual(referenceF32(path, 'model.embed_tokens.weight').values);
      t.dispose();
    }, 'archive.tensor');
  });

  it('loadFixtureJson reads config.json', () => {
    const cfg = loadFixtureJson<{ hidden_size: number }>('owl2_tiny/config.json');
    const raw = JSON.parse(readFileSync(fixturePath('owl2_tiny/config.json'), 'utf8')) as { hidden_size: number };
    expect(cfg.hidden_size).toBe(raw.hidden_size);
  });

  it('reads int64 fixtures as range-checked int32 (case input_ids)', async () => {
    const archive = loadFixture('owl2_tiny/case_train_step.safetensors');
    const info = archive.info('input_ids');
    expect(info.dtype).toBe('I64');
    const arr = archive.array('input_ids');
    expect(arr).toBeInstanceOf(Int32Array);
    const expected = loadFixtureJson<{ input_ids: number[] }>('owl2_tiny/case_train_step.json').input_ids;
    expect(Array.from(arr)).toEqual(expected);
    expect(info.shape).toEqual([1, expected.length]);
    await expectNoLeaks(() => {
      const t = archive.tensor('input_ids');
      expect(t.dtype).toBe('int32');
      t.dispose();
    });
  });
});
