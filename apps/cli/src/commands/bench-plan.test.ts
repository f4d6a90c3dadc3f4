import { planMemory } from '@owlet/mplug-owl';
import { afterEach, describe, expect, it, vi } from 'vitest';

import { UsageError } from '../errors.js';
import { benchPlanCommand, parsePlanDtype } from './bench-plan.js';

afterEach(() => vi.restoreAllMocks());

async function capture(argv: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => {
    out += String(s);
    return true;
  });
  const code = await benchPlanCommand(argv);
  vi.restoreAllMocks();
  return { code, out };
}

describe('owlet bench --plan', () => {
  it('--dtype all=q4 --context 1024 --json: the released 7B plan, ≤ 6 GB, the same numbers as planMemory', async () => {
    const { code, out } = await capture(['--plan', '--dtype', 'all=q4', '--context', '1024', '--json']);
    expect(code).toBe(0);
    const j = JSON.parse(out);
    const want = planMemory(
      { model_type: 'mplug_owl2' },
      {
        dtype: { decoder: 'q4', lm_head: 'q4', embed_tokens: 'q4', vision_encoder: 'q4', visual_abstractor: 'q4' },
        contextLength: 1024,
      },
    );
    expect(j.total_bytes).toBe(want.total_bytes);
    expect(j.total_bytes).toBeLessThanOrEqual(6e9);
    expect(j.parts.map((p: { name: string }) => p.name)).toEqual(want.parts.map((p) => p.name));
  });

  it('prints a table per part with a total', async () => {
    const { code, out } = await capture(['--plan', '--dtype', 'q4']);
    expect(code).toBe(0);
    for (const part of ['decoder', 'lm_head', 'embed_tokens', 'vision_encoder', 'kv_cache', 'activations', 'total'])
      expect(out).toMatch(new RegExp(`^  ${part} +[0-9.]+ GiB`, 'm'));
  });

  it('--dtype takes a dtype, all=D or group=D pairs; anything else is a usage error', () => {
    expect(parsePlanDtype('q8')).toBe('q8');
    expect(parsePlanDtype('decoder=q4,vision_encoder=fp16')).toEqual({ decoder: 'q4', vision_encoder: 'fp16' });
    expect(() => parsePlanDtype('int4')).toThrow(UsageError);
    expect(() => parsePlanDtype('text=q4')).toThrow(/unknown group "text"/);
  });
});
