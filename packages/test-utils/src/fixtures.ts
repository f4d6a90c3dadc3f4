import { existsSync } from 'node:fs';
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
