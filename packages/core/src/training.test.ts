import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import '@tensorflow/tfjs'; // registers the gradients, as @owlet/trainer does
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { isOwletError } from './errors.js';
import { assertGradientsRegistered, isTraining, withTraining } from './training.js';

const here = dirname(fileURLToPath(import.meta.url));

describe('gradients are the trainer’s, not core’s', () => {
  it('a training step without registered gradients fails at once with GRADIENTS_NOT_REGISTERED, naming what to import', () => {
    const saved = tf.getGradient(tf.BatchMatMul);
    expect(saved).toBeDefined();
    tf.unregisterGradient(tf.BatchMatMul);
    try {
      let err: unknown;
      try {
        withTraining(1, () => 0);
      } catch (e) {
        err = e;
      }
      expect(isOwletError(err, 'GRADIENTS_NOT_REGISTERED')).toBe(true);
      expect((err as Error).message).toMatch(/withTraining: .*import '@owlet\/trainer'/);
      expect(isTraining()).toBe(false); // refused before entering training mode
    } finally {
      tf.registerGradient(saved);
    }
    expect(() => assertGradientsRegistered('again')).not.toThrow();
    expect(withTraining(2, () => isTraining())).toBe(true);
  });

  it('@owlet/core depends on tfjs-core only: no @tensorflow/tfjs dependency, no library source imports it', () => {
    const pkg = JSON.parse(readFileSync(join(here, '../package.json'), 'utf8')) as {
      dependencies?: Record<string, string>;
      peerDependencies?: Record<string, string>;
    };
    expect(Object.keys(pkg.dependencies ?? {})).not.toContain('@tensorflow/tfjs');
    expect(pkg.peerDependencies?.['@tensorflow/tfjs-core']).toBeDefined();
    const offenders: string[] = [];
    const walk = (dir: string) => {
      for (const f of readdirSync(dir)) {
        const p = join(dir, f);
        if (statSync(p).isDirectory()) walk(p);
        else if (f.endsWith('.ts') && !/\.test(-helpers)?\.ts$|\.testutil\.ts$/.test(f)) {
          if (/from\s*'@tensorflow\/tfjs'|import\s*'@tensorflow\/tfjs'/.test(readFileSync(p, 'utf8')))
            offenders.push(p);
        }
      }
    };
    walk(here);
    expect(offenders).toEqual([]);
  });
});
