/**
 * `owlet bench --plan`: the GPU bytes a model needs on owlet's WebGPU engine, per part, from its
 * config alone (no weights are read, nothing is allocated): `planMemory` of @owlet/mplug-owl.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { type DTypeRequest, WEIGHT_GROUPS, type WeightGroup, isWeightDType } from '@owlet/core';
import { planMemory } from '@owlet/mplug-owl';

import { intFlag } from '../args.js';
import { EXIT, UsageError } from '../errors.js';
import { parseFlags } from '../flags.js';

export const BENCH_PLAN_HELP = `owlet bench --plan [options]

  GPU memory the WebGPU engine needs, per part, from the config alone (no weights read).

  --model DIR          a checkpoint folder whose config.json to plan (default: the released mPLUG-Owl2 7B)
  --dtype D            q4 | q8 | fp16 | fp32 (the language model, as fromPretrained's dtype),
                       GROUP=D,… for groups (${WEIGHT_GROUPS.join(', ')}),
                       or all=D for every group (the embedding table then stays on the host)
  --context N          KV-cache positions (default: the model's max_position_embeddings)
  --prefill N          tokens of the largest prefill (default min(512, context))
  --images N           images encoded at once (default 1)
  --json               print the plan as JSON`;

/** `--dtype`: a dtype, `all=D`, or `group=D,group=D`. */
export function parsePlanDtype(v: string | undefined): DTypeRequest | undefined {
  if (v === undefined) return undefined;
  if (isWeightDType(v) || v === 'auto') return v;
  const map: Partial<Record<WeightGroup, string>> = {};
  for (const part of v.split(',')) {
    const [group, d] = part.split('=') as [string, string | undefined];
    if (d === undefined || !(isWeightDType(d) || d === 'auto'))
      throw new UsageError(`--dtype: ${JSON.stringify(part)} is not GROUP=DTYPE`, 'dtypes: fp32, fp16, q8, q4');
    if (group === 'all') {
      for (const g of WEIGHT_GROUPS) map[g] = d;
    } else if ((WEIGHT_GROUPS as readonly string[]).includes(group)) {
      map[group as WeightGroup] = d;
    } else {
      throw new UsageError(
        `--dtype: unknown group ${JSON.stringify(group)}`,
        `groups: all, ${WEIGHT_GROUPS.join(', ')}`,
      );
    }
  }
  return map as DTypeRequest;
}

const GiB = (n: number) => `${(n / 2 ** 30).toFixed(2)} GiB`;

export async function benchPlanCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags(
    argv,
    {
      plan: { type: 'boolean' },
      model: { type: 'string' },
      dtype: { type: 'string' },
      context: { type: 'string' },
      prefill: { type: 'string' },
      images: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    { command: 'bench' },
  );
  if (values.help) {
    process.stdout.write(`${BENCH_PLAN_HELP}\n`);
    return EXIT.OK;
  }
  const dtype = parsePlanDtype(values.dtype);
  const context = intFlag('context', values.context, 1);
  const prefill = intFlag('prefill', values.prefill, 1);
  const images = intFlag('images', values.images, 1);
  let config: unknown = { model_type: 'mplug_owl2' };
  let source = 'the released mPLUG-Owl2 7B config (MPLUGOwl2Config defaults)';
  if (values.model !== undefined) {
    const file = join(values.model, 'config.json');
    try {
      config = JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
      throw new UsageError(`cannot read ${file}: ${(e as Error).message}`, '--model takes a checkpoint folder');
    }
    source = file;
  }
  const plan = planMemory(config, {
    ...(dtype !== undefined ? { dtype } : {}),
    ...(context !== undefined ? { contextLength: context } : {}),
    ...(prefill !== undefined ? { prefillLength: prefill } : {}),
    ...(images !== undefined ? { images } : {}),
  });
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ source, ...plan })}\n`);
    return EXIT.OK;
  }
  process.stdout.write(`GPU memory plan for ${source}, dtype ${JSON.stringify(plan.dtype)} (WebGPU engine)\n`);
  const w = Math.max(...plan.parts.map((p) => p.name.length), 'total'.length);
  for (const p of plan.parts)
    process.stdout.write(`  ${p.name.padEnd(w)}  ${GiB(p.bytes).padStart(10)}  ${p.detail}\n`);
  process.stdout.write(
    `  ${'total'.padEnd(w)}  ${GiB(plan.total_bytes).padStart(10)}  (${(plan.total_bytes / 1e9).toFixed(2)} GB)\n`,
  );
  const big = plan.weights.largestFloat32;
  if (big)
    process.stdout.write(
      `  largest float32 tensor: ${big.key} ${(big.bytes / 2 ** 20).toFixed(0)} MiB (must fit the device's maxStorageBufferBindingSize; packed weights are split)\n`,
    );
  return EXIT.OK;
}
