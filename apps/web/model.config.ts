/**
 * The model the web app ships: this folder is copied into the build (`dist/models/<name>/`) with a
 * sha256 manifest, and loads with no network. Swapping the bundled model is this one line.
 */
import { isAbsolute, resolve } from 'node:path';

export const BUNDLED_MODEL_DIR = '../cli/models/owlet-tiny-random';

/** The folder a build bundles: `OWLET_WEB_MODEL_DIR` (absolute, or relative to apps/web) or the one above. */
export function bundledModelDir(appDir: string): string {
  const d = process.env.OWLET_WEB_MODEL_DIR ?? BUNDLED_MODEL_DIR;
  return isAbsolute(d) ? d : resolve(appDir, d);
}
