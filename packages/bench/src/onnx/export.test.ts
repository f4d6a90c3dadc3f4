import * as tf from '@tensorflow/tfjs-core';
import type { SafetensorsArchive } from '@owlet/checkpoint';
import { describeBackends, expectNoLeaks, loadFixture, loadFixtureJson, maxAbsDiff } from '@owlet/test-utils';
import { MplugOwlVisionModel, resolveMplugOwlVisionConfig } from '@owlet/vision-encoder';
import {
  MplugOwlVisualAbstractorModel,
  resolveMplugOwlVisualAbstractorConfig,
  ABSTRACTOR_POSITION_BUFFER_KEYS,
} from '@owlet/visual-abstractor';
import * as ort from 'onnxruntime-node';
import { expect } from 'vitest';

import { exportVisionToOnnx } from './export.js';

interface Variant {
  dir: 'owl2_tiny' | 'owl1_tiny';
  visionPrefix: string;
  abstractorPrefix: string;
}
const V2: Variant = {
  dir: 'owl2_tiny',
  visionPrefix: 'model.vision_model.',
  abstractorPrefix: 'model.visual_abstractor.',
};
const V1: Variant = { dir: 'owl1_tiny', visionPrefix: 'vision_model.', abstractorPrefix: 'abstractor.' };

function subDict(archive: SafetensorsArchive, prefix: string): Map<string, tf.Tensor> {
  return new Map(
    archive
      .keys()
      .filter((k) => k.startsWith(prefix))
      .map((k) => [k.slice(prefix.length), archive.tensor(k)]),
  );
}

function load(v: Variant): {
  vision: MplugOwlVisionModel;
  abstractor: MplugOwlVisualAbstractorModel;
  archive: SafetensorsArchive;
} {
  const archive = loadFixture(`${v.dir}/model.safetensors`);
  const json = loadFixtureJson(`${v.dir}/config.json`);
  const vision = new MplugOwlVisionModel(resolveMplugOwlVisionConfig(json));
  const abstractor = new MplugOwlVisualAbstractorModel(resolveMplugOwlVisualAbstractorConfig(json));
  for (const [m, prefix] of [
    [vision, v.visionPrefix],
    [abstractor, v.abstractorPrefix],
  ] as const) {
    const sd = subDict(archive, prefix);
    m.loadStateDict(sd, { ignore: [ABSTRACTOR_POSITION_BUFFER_KEYS] });
    tf.dispose([...sd.values()]);
  }
  return { vision, abstractor, archive };
}

async function runOrt(bytes: Uint8Array, feeds: Record<string, ort.Tensor>): Promise<Record<string, Float32Array>> {
  const session = await ort.InferenceSession.create(bytes, {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
  });
  try {
    const out = await session.run(feeds);
    return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, t.data as Float32Array]));
  } finally {
    await session.release();
  }
}

const TOL = 1e-4;

describeBackends('ONNX export of the vision tower + abstractor, run by onnxruntime-node', ({ backend, it }) => {
  for (const [name, v, caseName] of [
    ['mPLUG-Owl2 tiny, one image', V2, 'case_one_image'],
    ['mPLUG-Owl2 tiny, two images (symbolic batch)', V2, 'case_two_images'],
    ['mPLUG-Owl v1 tiny (queries as a graph input, no position tables)', V1, 'case_one_image'],
  ] as const) {
    // the leak check spans the whole test: modules, forward (which may build buffers the modules own
    // and free on dispose) and the export
    it(`${name}: onnxruntime matches owlet (≤ ${TOL}) and the PyTorch fixture`, () =>
      expectNoLeaks(async () => {
        const c = loadFixture(`${v.dir}/${caseName}.safetensors`);
        const { vision, abstractor, archive } = load(v);
        const queryTokens = v === V1 ? archive.tensor('query_tokens') : null;
        const pixelsInfo = c.info('pixel_values');
        const pixels = c.array('pixel_values') as Float32Array;
        const px = tf.tensor(pixels, pixelsInfo.shape);
        try {
          // owlet
          const out = vision.forward(px);
          const vt = abstractor.forward(out.last_hidden_state, queryTokens ? { query_embeds: queryTokens } : {});
          const last = (await out.last_hidden_state.data()) as Float32Array;
          const tokens = (await vt.data()) as Float32Array;
          tf.dispose([out.last_hidden_state, vt]);
          // export → onnxruntime (the export reads parameters without leaving tensors behind)
          const before = tf.memory().numTensors;
          const exported = await exportVisionToOnnx(vision, abstractor);
          expect(tf.memory().numTensors).toBe(before);
          expect(exported.inputNames).toEqual(v === V1 ? ['pixel_values', 'query_embeds'] : ['pixel_values']);
          const feeds: Record<string, ort.Tensor> = {
            pixel_values: new ort.Tensor('float32', pixels, pixelsInfo.shape),
          };
          if (queryTokens)
            feeds.query_embeds = new ort.Tensor(
              'float32',
              (await queryTokens.data()) as Float32Array,
              queryTokens.shape,
            );
          const ortOut = await runOrt(exported.model.toBytes(), feeds);
          const dLast = maxAbsDiff(ortOut.last_hidden_state!, last);
          const dTok = maxAbsDiff(ortOut.visual_tokens!, tokens);
          const dFixture = maxAbsDiff(ortOut.visual_tokens!, c.array('abstractor_output'));
          console.info(
            `[onnx] ${v.dir} ${caseName} [${backend}]: max |ort − owlet| last_hidden_state ${dLast.maxAbs.toExponential(2)}, visual tokens ${dTok.maxAbs.toExponential(2)}; |ort − PyTorch| ${dFixture.maxAbs.toExponential(2)}`,
          );
          expect(ortOut.last_hidden_state!.length).toBe(c.array('vision_last_hidden_state').length);
          expect(dLast.maxAbs).toBeLessThanOrEqual(TOL);
          expect(dTok.maxAbs).toBeLessThanOrEqual(TOL);
          expect(dFixture.maxAbs).toBeLessThanOrEqual(TOL);
          // the initializers hold every parameter (plus the computed position tables for mPLUG-Owl2)
          const params = vision.numParameters() + abstractor.numParameters();
          expect(exported.weightBytes).toBeGreaterThanOrEqual(params * 4);
        } finally {
          tf.dispose([px, ...(queryTokens ? [queryTokens] : [])]);
          vision.dispose();
          abstractor.dispose();
        }
      }, name));
  }
});
