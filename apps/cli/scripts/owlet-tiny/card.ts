/**
 * Evaluates the exported owlet-tiny on the test seed (500 items, never used in training) and writes
 * its model card (README.md), loss curve (loss-curve.svg) and evaluation.json beside the weights.
 *
 *   pnpm --filter owlet card:tiny      (train:tiny runs it after the export)
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { QUESTION_TYPES } from '@owlet/datasets';
import { fromPretrained } from '@owlet/mplug-owl';

import { IMAGE_SIZE, MODEL_CONFIG, PATCH_SIZE, RECIPE, TEST_SEED, TRAIN_SEED, VALIDATION_SEED } from './config.js';
import { evaluateModel, type EvalReport } from './evaluate.js';
import { CLI_ROOT, MODEL_DIR } from './lib.js';

interface LogLine {
  t: number;
  event: string;
  stage?: string;
  step?: number;
  loss?: number;
  overall?: number;
  seconds?: number;
  per_type?: EvalReport['per_type'];
  cpus?: number;
  cpu?: string;
  bytes?: number;
  parameters?: number;
  stopped_early?: boolean;
}

export function lossCurveSvg(points: { step: number; loss: number; stage: string }[], stage1Steps: number): string {
  const W = 640;
  const H = 320;
  const L = 56;
  const R = 16;
  const T = 24;
  const B = 40;
  const maxStep = Math.max(1, ...points.map((p) => p.step));
  const ys = points.map((p) => Math.log10(Math.max(p.loss, 1e-3)));
  const yMin = Math.floor(Math.min(...ys));
  const yMax = Math.ceil(Math.max(...ys));
  const x = (s: number) => L + ((W - L - R) * s) / maxStep;
  const y = (v: number) => T + ((H - T - B) * (yMax - v)) / Math.max(1e-9, yMax - yMin);
  const line = (stage: string, colour: string) => {
    const pts = points
      .filter((p) => p.stage === stage)
      .map((p) => `${x(p.step).toFixed(1)},${y(Math.log10(Math.max(p.loss, 1e-3))).toFixed(1)}`)
      .join(' ');
    return pts ? `<polyline fill="none" stroke="${colour}" stroke-width="1.5" points="${pts}"/>` : '';
  };
  const grid: string[] = [];
  for (let e = yMin; e <= yMax; e++) {
    grid.push(`<line x1="${L}" x2="${W - R}" y1="${y(e)}" y2="${y(e)}" stroke="#ddd"/>`);
    grid.push(`<text x="${L - 6}" y="${y(e) + 4}" text-anchor="end" font-size="11">${10 ** e}</text>`);
  }
  const tick = Math.max(100, Math.ceil(maxStep / 8 / 100) * 100);
  for (let s = 0; s <= maxStep; s += tick) {
    grid.push(`<text x="${x(s)}" y="${H - B + 16}" text-anchor="middle" font-size="11">${s}</text>`);
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">
<rect width="${W}" height="${H}" fill="white"/>
${grid.join('\n')}
<line x1="${x(stage1Steps)}" x2="${x(stage1Steps)}" y1="${T}" y2="${H - B}" stroke="#999" stroke-dasharray="4 3"/>
${line('stage1', '#1f77b4')}
${line('stage2', '#d62728')}
<text x="${W / 2}" y="${H - 6}" text-anchor="middle" font-size="12">optimizer step (stage 1 captions, then stage 2 questions + 20 % captions)</text>
<text x="${L + 8}" y="${T - 8}" font-size="12">training loss (token cross-entropy, log scale; 10-step means)</text>
<text x="${W - R - 150}" y="${T + 14}" font-size="12" fill="#1f77b4">stage 1</text>
<text x="${W - R - 90}" y="${T + 14}" font-size="12" fill="#d62728">stage 2</text>
</svg>
`;
}

const pct = (v: number) => `${(v * 100).toFixed(1)} %`;

export async function writeCard(runDir: string): Promise<EvalReport> {
  const lines = readFileSync(join(runDir, 'log.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as LogLine);
  const logs = lines.filter((l) => l.event === 'log');
  const stage1End = Math.max(0, ...logs.filter((l) => l.stage === 'stage1').map((l) => l.step ?? 0));
  // The last entry per (stage, step) wins: a resumed run logs the steps after its checkpoint again.
  const byKey = new Map<string, { step: number; loss: number; stage: string }>();
  for (const l of logs) {
    const step = (l.step ?? 0) + (l.stage === 'stage2' ? stage1End : 0);
    byKey.set(`${l.stage}:${l.step}`, { step, loss: l.loss ?? 0, stage: l.stage ?? '' });
  }
  const points = [...byKey.values()].sort((a, b) => a.step - b.step);
  const ends = lines.filter((l) => l.event === 'stage_end');
  const lastEnd = (s: string) => ends.filter((l) => l.stage === s).at(-1);
  // Wall time: sum over the runs (start → last line of each), so a resume does not count the gap.
  const starts = lines.map((l, i) => (l.event === 'start' ? i : -1)).filter((i) => i >= 0);
  let wall = 0;
  for (const [k, i] of starts.entries()) {
    const end = (starts[k + 1] ?? lines.length) - 1;
    wall += ((lines[end]?.t ?? 0) - (lines[i]?.t ?? 0)) / 1000;
  }
  const start = lines.find((l) => l.event === 'start');
  const evals = lines.filter((l) => l.event === 'eval');

  const model = await fromPretrained(MODEL_DIR, { backend: 'wasm' });
  const t0 = Date.now();
  const report = await evaluateModel(model, TEST_SEED, 500);
  const evalSeconds = (Date.now() - t0) / 1000;
  model.dispose();
  writeFileSync(
    join(MODEL_DIR, 'evaluation.json'),
    `${JSON.stringify({ ...report, wrong: report.wrong.slice(0, 50) }, null, 2)}\n`,
  );
  writeFileSync(join(MODEL_DIR, 'loss-curve.svg'), lossCurveSvg(points, stage1End));

  const s1 = lastEnd('stage1')?.step ?? stage1End;
  const s2 =
    lastEnd('stage2')?.step ?? Math.max(0, ...logs.filter((l) => l.stage === 'stage2').map((l) => l.step ?? 0));
  const weights = existsSync(join(MODEL_DIR, 'model.safetensors'))
    ? readFileSync(join(MODEL_DIR, 'model.safetensors')).length
    : 0;
  const v = MODEL_CONFIG.visual_config;
  const card = `# owlet-tiny

A small model with the **mPLUG-Owl2 architecture** (ViT vision encoder → visual abstractor →
modality-adaptive LLaMA decoder), trained from scratch **by owlet itself** (\`@owlet/trainer\` on
TensorFlow.js) to answer simple questions about generated images of coloured shapes. It exists so
that \`owlet run\` answers correctly on a fresh clone, offline, and so that the whole pipeline —
data → two-stage training → export → load → generate — is proven end to end. It knows nothing
outside its toy world.

## Test accuracy

500 freshly generated images and questions (seed ${TEST_SEED}, never used in training), answered
through \`fromPretrained\` + \`model.chat\` (greedy) from PNG bytes, exact match after trim /
lowercase / stripping a final period (${evalSeconds.toFixed(0)} s on this machine):

| question type | accuracy |
|---|---|
${QUESTION_TYPES.map((t) => `| ${t} | ${pct(report.per_type[t].accuracy)} (${report.per_type[t].correct}/${report.per_type[t].n}) |`).join('\n')}
| **overall** | **${pct(report.overall)}** (${Math.round(report.overall * report.n)}/${report.n}) |

Target of issue #17: ≥ 95 % overall and ≥ 90 % per type. ${
    report.overall >= 0.95 && QUESTION_TYPES.every((t) => report.per_type[t].accuracy >= 0.9)
      ? 'Met.'
      : '**Not met** by this checkpoint (see "Limits").'
  }

Held-out accuracy during training (seed ${VALIDATION_SEED}, ${RECIPE.eval_items} items, the same greedy decoding
through full-sequence forwards):

| stage-2 step | overall | ${QUESTION_TYPES.join(' | ')} |
|---|---|${QUESTION_TYPES.map(() => '---').join('|')}|
${evals.map((e) => `| ${e.step} | ${pct(e.overall ?? 0)} | ${QUESTION_TYPES.map((t) => pct(e.per_type?.[t]?.accuracy ?? 0)).join(' | ')} |`).join('\n')}

## Data

The shapes VQA set of \`@owlet/datasets\` (packages/datasets/README.md), generated on the fly — item
\`i\` of a stream is a pure function of (seed, i): square images 64–256 px, light background (each
channel 200–255), 1–3 non-overlapping circles / squares / upright triangles, each 20–45 % of the
side, in red / green / blue / yellow with ±30 (yellow ±25) per-channel jitter, edges anti-aliased
or hard. Stage 1: captions (\`Describe the image.\` → \`There are 2 shapes: a red circle and a blue
square.\`). Stage 2: \`What shape is in the image?\`, \`What color is the {shape}?\`, \`How many
shapes are there?\`, \`Is there a {color} {shape}?\`, answered with one lowercase word through the
\`mplug_owl2\` chat template — the exact prompt \`model.chat\` builds, then the answer and \`</s>\`
(only those labelled). Training streams: seeds ${TRAIN_SEED + 100} (stage 1), ${TRAIN_SEED + 200} (stage 2).

## Model

| part | configuration |
|---|---|
| vision encoder | ViT, hidden ${v.visual_model.hidden_size}, ${v.visual_model.num_hidden_layers} layers, ${v.visual_model.num_attention_heads} heads, image ${IMAGE_SIZE} px, patch ${PATCH_SIZE} (${(IMAGE_SIZE / PATCH_SIZE) ** 2} patches) |
| visual abstractor | ${v.visual_abstractor.num_hidden_layers} layers, ${v.visual_abstractor.num_learnable_queries} learnable queries (+ vit_eos = ${v.visual_abstractor.num_learnable_queries + 1} visual tokens), sincos grid ${v.visual_abstractor.grid_size} |
| language decoder | modality-adaptive LLaMA, hidden ${MODEL_CONFIG.hidden_size}, ${MODEL_CONFIG.num_hidden_layers} layers, ${MODEL_CONFIG.num_attention_heads} heads, MLP ${MODEL_CONFIG.intermediate_size} |
| tokenizer | the real LLaMA SentencePiece model (32000 pieces), unchanged |
| size | ${start?.parameters ?? '?'} parameters; weights F16, ${(weights / 1e6).toFixed(1)} MB |

Initialisation: the reference init (normal, std 0.02), then PyTorch's default U(±1/√fan_in) for
the abstractor's cross-attention query / key projections. At this width the reference init leaves
those logits ≈ 0: attention is uniform, every abstractor query returns the image mean and training
stalls at the answer prior. (An earlier run that re-initialised the whole vision tower this way,
with higher learning rates, never learned shape: 33 % at stage-2 step 400, chance level.)

## Recipe

Reproduce with \`pnpm train:tiny\` (fixed seeds; resumable: re-run after a kill). AdamW (β 0.9 /
0.98, ε 1e-6 — the paper's), cosine schedule, weight decay 0.01, gradient clipping 1, batch
${RECIPE.batch_size}:

| stage | data | steps | lr (decoder) | lr (vision + abstractor) | warmup |
|---|---|---|---|---|---|
| 1 | captions | ${s1} | ${RECIPE.stage1.lr} | ${RECIPE.stage1.vision_lr} | ${RECIPE.stage1.warmup_steps} |
| 2 | questions + ${RECIPE.stage2.caption_fraction * 100} % captions | ${s2}${lastEnd('stage2')?.stopped_early ? ' (stopped early)' : ''} | ${RECIPE.stage2.lr} | ${RECIPE.stage2.vision_lr} | ${RECIPE.stage2.warmup_steps} |

Deviation from mPLUG-Owl2's stage 1: **every module trains in both stages.** The paper freezes the
pre-trained LLM in stage 1; here the LLM starts random, so a frozen one could never learn to read
the visual tokens.

Wall time: ${(wall / 60).toFixed(0)} min of training on ${start?.cpus ?? '?'} CPU core(s) (${start?.cpu ?? '?'}),
tfjs wasm backend, shared with other jobs.

![training loss](loss-curve.svg)

## Limits

- Only the toy world above: other questions, other objects or photos get confident nonsense.
- Accuracy is from this model's own renderer; the training set varies sizes, jitter, triangle
  aspect and anti-aliasing so that any renderer of the description should work, but only this one
  was measured.
${
  report.wrong.length
    ? `- Typical errors (first few of ${report.wrong.length}): ${report.wrong
        .slice(0, 6)
        .map((w) => `"${w.question}" → "${w.got.trim()}" (expected ${w.expected})`)
        .join('; ')}.`
    : ''
}
`;
  writeFileSync(join(MODEL_DIR, 'README.md'), card);
  return report;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const runDir = process.env.OWLET_TINY_RUN ?? join(CLI_ROOT, '..', '..', '.scratch', 'owlet-tiny');
  const r = await writeCard(runDir);
  process.stdout.write(
    `test accuracy ${pct(r.overall)}: ${QUESTION_TYPES.map((t) => `${t} ${pct(r.per_type[t].accuracy)}`).join(', ')}\n`,
  );
}
