import { existsSync, readFileSync } from 'node:fs';

import { readSafetensors, type SafetensorsArchive } from '@owlet/checkpoint';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/** The repository root (three levels above packages/test-utils/src). */
export const REPO_ROOT = resolve(here, '..', '..', '..');

/**
 * The golden fixtures folder: `$OWLET_FIXTURES_DIR`, else `../shared/fixtures` beside the
 * repository (where the project's shared folder lives, for developers and CI alike).
 */
export function fixturesDir(): string {
  const env = process.env.OWLET_FIXTURES_DIR;
  const dir = env ? resolve(env) : resolve(REPO_ROOT, '..', 'shared', 'fixtures');
  if (!existsSync(dir)) {
    throw new Error(`fixtures folder not found at ${dir}; set OWLET_FIXTURES_DIR to the shared/fixtures folder`);
  }
  return dir;
}

/** Absolute path of a file inside the fixtures folder. */
export function fixturePath(...parts: string[]): string {
  return join(fixturesDir(), ...parts);
}

function readFixtureFile(relPath: string): Buffer {
  const path = fixturePath(relPath);
  if (!existsSync(path)) {
    throw new Error(`fixture ${relPath} not found at ${path}`);
  }
  return readFileSync(path);
}

/**
 * Reads and validates a safetensors fixture, e.g. `loadFixture('owl2_tiny/model.safetensors')`
 * (path relative to the fixtures folder). `archive.tensor(key)` makes tensors the caller owns.
 */
export function loadFixture(relPath: string): SafetensorsArchive {
  return readSafetensors(readFixtureFile(relPath));
}

/** Reads a JSON fixture, e.g. `loadFixtureJson('owl2_tiny/config.json')`. */
export function loadFixtureJson<T = unknown>(relPath: string): T {
  return JSON.parse(readFixtureFile(relPath).toString('utf8')) as T;
}
