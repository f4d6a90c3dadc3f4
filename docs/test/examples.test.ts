/**
 * Every example the documentation shows runs here (see extract.ts for which): on the bundled tiny
 * model (`apps/cli/models/owlet-tiny-random`) or models built from tiny configs, from the
 * repository root, each ending with an assertion and leaving no tensor behind.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import * as tf from '@tensorflow/tfjs-core';
import { REPO_ROOT } from '@owlet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { collectExamples, endsWithAssertion, type Example } from './extract.js';
import { type Served, serveTinyModel } from './server.js';

const RUN_DIR = join(REPO_ROOT, 'docs', 'test', '.run');
const examples = collectExamples(REPO_ROOT);
const byFile = new Map<string, Example[]>();
for (const e of examples) byFile.set(e.file, [...(byFile.get(e.file) ?? []), e]);

beforeAll(() => {
  process.chdir(REPO_ROOT);
  rmSync(RUN_DIR, { recursive: true, force: true });
  mkdirSync(RUN_DIR, { recursive: true });
});

it('finds the examples of the site, the READMEs and the TSDoc', () => {
  const files = [...byFile.keys()];
  expect(files).toContain('README.md');
  expect(files).toContain('docs/architecture.md');
  expect(files.some((f) => f.endsWith('.ts'))).toBe(true);
});

for (const [file, list] of byFile) {
  describe(file, () => {
    let server: Served | undefined;
    const needsServer = list.some((e) => e.server && !e.skip);
    if (needsServer) {
      beforeAll(async () => {
        server = await serveTinyModel(REPO_ROOT);
        process.env.OWLET_BASE_URL = server.baseURL;
      });
      afterAll(async () => {
        delete process.env.OWLET_BASE_URL;
        await server?.stop();
      });
    }
    for (const ex of list) {
      const name = `line ${ex.line}`;
      if (ex.skip) {
        it.skip(`${name} — skipped: ${ex.skip}`, () => {});
        continue;
      }
      it(name, async () => {
        expect(endsWithAssertion(ex.code), `${file}:${ex.line} must end with an assertion`).toBe(true);
        const path = join(RUN_DIR, `${file.replace(/[^\w]+/g, '_')}_${ex.line}.ts`);
        writeFileSync(path, `${ex.code}\nexport {};\n`);
        const before = tf.memory().numTensors;
        await import(pathToFileURL(path).href);
        const leaked = tf.memory().numTensors - before;
        expect(leaked, `${file}:${ex.line} left ${leaked} tensors undisposed`).toBe(0);
      });
    }
  });
}
