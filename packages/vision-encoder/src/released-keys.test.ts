import * as tf from '@tensorflow/tfjs-core';
import { Module } from '@owlet/core';
import { loadFixtureJson } from '@owlet/test-utils';
import { describe, expect, it } from 'vitest';

import { MPLUG_OWL2_VISION_CONFIG, MPLUG_OWL_VISION_CONFIG, type MplugOwlVisionConfig } from './config.js';
import { MplugOwlVisionModel } from './MplugOwlVisionModel.js';

interface ReleasedKeys {
  keys: { key: string; shape: number[] }[];
}

class Holder extends Module {
  add<M extends Module>(name: string, m: M): M {
    return this.registerModule(name, m);
  }
}

function released(file: string, prefix: string): Map<string, number[]> {
  const json = loadFixtureJson<ReleasedKeys>(file);
  return new Map(json.keys.filter((k) => k.key.startsWith(prefix)).map((k) => [k.key, k.shape]));
}

function built(config: MplugOwlVisionConfig, path: string[]): { root: Holder; vision: MplugOwlVisionModel } {
  const root = new Holder();
  let parent = root;
  for (const seg of path.slice(0, -1)) parent = parent.add(seg, new Holder());
  const vision = parent.add(path[path.length - 1]!, new MplugOwlVisionModel(config));
  return { root, vision };
}

describe('MplugOwlVisionModel with the released configurations (shape-only, nothing materialised)', () => {
  it('mPLUG-Owl2: the keys and shapes of model.vision_model.* in released_keys_mplug_owl2_7b.json, 303,966,208 parameters', () => {
    const before = tf.memory().numTensors;
    const { root, vision } = built(MPLUG_OWL2_VISION_CONFIG, ['model', 'vision_model']);
    const expected = released('released_keys_mplug_owl2_7b.json', 'model.vision_model.');
    expect(expected.size).toBe(295);
    const actual = new Map([...root.namedParameters()].map(([k, p]) => [k, [...p.shape]]));
    expect([...actual.keys()].sort()).toEqual([...expected.keys()].sort());
    for (const [k, shape] of expected) expect(actual.get(k), k).toEqual(shape);
    expect(root.numParameters()).toBe(303_966_208);
    // The model's own keys start at `embeddings.`.
    expect([...vision.namedParameters()][0]![0]).toBe('embeddings.cls_token');
    // Shape-only: no tensor was allocated for 1.2 GB of weights.
    expect(vision.unmaterializedKeys()).toHaveLength(295);
    expect(tf.memory().numTensors).toBe(before);
    // checkStateDict accepts the released key list as it is (strict), without any tensor.
    const report = root.checkStateDict([...expected]);
    expect(report.loaded).toHaveLength(295);
    root.dispose();
  });

  it('mPLUG-Owl v1: the keys and shapes of vision_model.* in released_keys_mplug_owl_7b.json', () => {
    const { root } = built(MPLUG_OWL_VISION_CONFIG, ['vision_model']);
    const expected = released('released_keys_mplug_owl_7b.json', 'vision_model.');
    const actual = new Map([...root.namedParameters()].map(([k, p]) => [k, [...p.shape]]));
    expect([...actual.keys()].sort()).toEqual([...expected.keys()].sort());
    for (const [k, shape] of expected) expect(actual.get(k), k).toEqual(shape);
    expect(actual.get('vision_model.embeddings.position_embedding')).toEqual([1, 257, 1024]);
    let n = 0;
    for (const s of expected.values()) n += s.reduce((a, b) => a * b, 1);
    expect(root.numParameters()).toBe(n);
    root.dispose();
  });
});
