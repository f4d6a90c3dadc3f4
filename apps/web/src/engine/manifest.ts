/**
 * The manifest of a model folder: every file with its size and sha256. The build writes one for the
 * bundled model (it ships inside the JS bundle, so the hashes cannot be swapped with the weights);
 * a model served from a URL may carry its own `owlet-manifest.json`.
 */
export interface ManifestFile {
  name: string;
  size: number;
  /** Lowercase hex. */
  sha256: string;
}

export interface ModelManifest {
  format: 'owlet-manifest/1';
  /** The folder's name (`owlet-tiny-random`). */
  id: string;
  files: ManifestFile[];
  total_size: number;
  /** True for a placeholder with random weights (its answers are noise). */
  random_weights?: boolean;
}

/** The bundled model's manifest with its path relative to the app (`models/<id>/`). */
export interface BundledModel extends ModelManifest {
  path: string;
}

export const MANIFEST_NAME = 'owlet-manifest.json';

const HEX64 = /^[0-9a-f]{64}$/;
const SAFE_NAME = /^[A-Za-z0-9._-]+$/;

/** Validates a parsed manifest (from a server: untrusted), returning it typed, or a reason. */
export function parseManifest(json: unknown): ModelManifest | string {
  if (typeof json !== 'object' || json === null) return 'the manifest is not a JSON object';
  const m = json as Record<string, unknown>;
  if (m.format !== 'owlet-manifest/1') return `unknown manifest format ${JSON.stringify(m.format)}`;
  if (typeof m.id !== 'string' || !m.id) return 'the manifest has no id';
  if (!Array.isArray(m.files) || m.files.length === 0) return 'the manifest lists no files';
  const seen = new Set<string>();
  let total = 0;
  for (const [i, f] of (m.files as unknown[]).entries()) {
    const e = f as Record<string, unknown>;
    if (typeof e?.name !== 'string' || !SAFE_NAME.test(e.name) || e.name === '.' || e.name === '..')
      return `files[${i}].name ${JSON.stringify(e?.name)} is not a plain file name`;
    if (seen.has(e.name)) return `files[${i}]: ${e.name} is listed twice`;
    seen.add(e.name);
    if (typeof e.size !== 'number' || !Number.isSafeInteger(e.size) || e.size < 0)
      return `files[${i}] (${e.name}): size ${JSON.stringify(e.size)} is not a byte count`;
    if (typeof e.sha256 !== 'string' || !HEX64.test(e.sha256))
      return `files[${i}] (${e.name}): sha256 ${JSON.stringify(e.sha256)} is not 64 lowercase hex digits`;
    total += e.size;
  }
  if (!seen.has('config.json')) return 'the manifest does not list config.json';
  if (m.total_size !== undefined && m.total_size !== total)
    return `total_size ${String(m.total_size)} disagrees with the files (${total} bytes)`;
  return {
    format: 'owlet-manifest/1',
    id: m.id,
    files: (m.files as ManifestFile[]).map((f) => ({ name: f.name, size: f.size, sha256: f.sha256 })),
    total_size: total,
    ...(typeof m.random_weights === 'boolean' ? { random_weights: m.random_weights } : {}),
  };
}
