import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { writeSafetensors } from '@owlet/checkpoint';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, expect } from 'vitest';

import { describeBackends, expectNoLeaks } from '@owlet/test-utils';

import { loadCheckpointInto } from './load-checkpoint.js';
import { Module } from './module.js';

const tmpRoot = mkdtempSync(join(tmpdir(), 'owlet-load-test-'));
afterAll(() => rmSync(tmpRoot, { recursive: true, force: true }));
let dirCount = 0;
const tmpDir = () => {
  const d = join(tmpRoot, `d${dirCount++}`);
  mkdirSync(d);
  return d;
};

class Proj extends Module {
  readonly weight = this.registerParameter('weight', [2, 3]);
  readonly bias = this.registerParameter('bias', [2]);
}
class Tiny extends Module {
  readonly proj = this.registerModule('proj', new Proj());
  readonly ids = this.registerParameter('ids', [3], { dtype: 'int32' });
}

describeBackends('loadCheckpointInto', ({ it }) => {
  it('checks keys and shapes first, streams tensors in, disposes them, and leaks nothing', async () => {
    const dir = tmpDir();
    const w = [0.5, -1, 2, 3, -4.25, 6];
    const b = [0.125, -0.5];
    writeFileSync(
      join(dir, 'model.safetensors'),
      writeSafetensors({
        'proj.weight': { dtype: 'BF16', shape: [2, 3], data: w },
        'proj.bias': { dtype: 'F16', shape: [2], data: b },
        ids: { dtype: 'I64', shape: [3], data: [7, 8, 9] },
        'rotary.inv_freq': { dtype: 'F32', shape: [1], data: [1] },
      }),
    );
    const m = new Tiny();
    const events: string[] = [];
    const before = tf.memory().numTensors;
    const report = await loadCheckpointInto(m, dir, {
      ignore: [/inv_freq$/],
      onProgress: (e) => events.push(e.status),
    });
    // exactly the 3 parameter variables the module now owns; every streamed tensor was disposed
    expect(tf.memory().numTensors - before).toBe(3);
    expect(report.loaded.sort()).toEqual(['ids', 'proj.bias', 'proj.weight']);
    expect(report.ignored).toEqual(['rotary.inv_freq']);
    expect(Array.from(await m.getParameter('proj.weight')!.value.data())).toEqual(w);
    expect(Array.from(await m.getParameter('proj.bias')!.value.data())).toEqual(b);
    expect(Array.from(await m.getParameter('ids')!.value.data())).toEqual([7, 8, 9]);
    expect(events.at(-1)).toBe('ready');
    // loading again (parameters exist) creates nothing new
    await expectNoLeaks(() => loadCheckpointInto(m, dir, { ignore: [/inv_freq$/] }));
    // a mismatch throws StateDictError before anything is assigned
    const bad = tmpDir();
    writeFileSync(
      join(bad, 'model.safetensors'),
      writeSafetensors({
        'proj.weight': { dtype: 'F32', shape: [3, 2], data: [9, 9, 9, 9, 9, 9] },
        'proj.bias': { dtype: 'F32', shape: [2], data: [9, 9] },
        ids: { dtype: 'I32', shape: [3], data: [0, 0, 0] },
      }),
    );
    await expectNoLeaks(async () => {
      await expect(loadCheckpointInto(m, bad)).rejects.toMatchObject({ code: 'STATE_DICT_MISMATCH' });
    });
    expect(Array.from(await m.getParameter('proj.bias')!.value.data())).toEqual(b);
    m.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
