/** The sampling flags shared by run and chat, validated before any work starts. */
import { intFlag, numFlag, type FlagSpecs } from './flags.js';

export { intFlag, numFlag } from './flags.js';

export interface SamplingFlags {
  max_new_tokens?: number;
  temperature?: number;
  top_p?: number;
  top_k?: number;
  seed?: number;
}

export const SAMPLING_OPTIONS = {
  'max-new-tokens': { type: 'string' },
  temperature: { type: 'string' },
  'top-p': { type: 'string' },
  'top-k': { type: 'string' },
  seed: { type: 'string' },
} as const satisfies FlagSpecs;

export function samplingFlags(v: Record<string, unknown>): SamplingFlags & { do_sample?: boolean } {
  const s = v as Record<string, string | undefined>;
  const out: SamplingFlags & { do_sample?: boolean } = {};
  const mnt = intFlag('max-new-tokens', s['max-new-tokens'], 1);
  if (mnt !== undefined) out.max_new_tokens = mnt;
  const t = numFlag('temperature', s.temperature, (n) => n >= 0, 'a number ≥ 0 (0 = greedy)');
  if (t !== undefined) {
    if (t === 0) out.do_sample = false;
    else {
      out.do_sample = true;
      out.temperature = t;
    }
  }
  const p = numFlag('top-p', s['top-p'], (n) => n > 0 && n <= 1, 'a number in (0, 1]');
  if (p !== undefined) out.top_p = p;
  const k = intFlag('top-k', s['top-k'], 0);
  if (k !== undefined) out.top_k = k;
  const seed = intFlag('seed', s.seed, 0);
  if (seed !== undefined) out.seed = seed;
  return out;
}
