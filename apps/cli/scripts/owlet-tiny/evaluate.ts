/**
 * Accuracy of an exported owlet-tiny folder on freshly generated shapes questions, through
 * `fromPretrained` and `model.chat` — the path `owlet run` takes. Shared by
 * `pnpm --filter owlet evaluate:tiny` and apps/cli/src/owlet-tiny.test.ts.
 */
import { encodePng, normalizeAnswer, QUESTION_TYPES, renderScene, vqaItem, type QuestionType } from '@owlet/datasets';
import type { MplugOwlModel } from '@owlet/mplug-owl';

export interface ItemResult {
  index: number;
  type: QuestionType;
  question: string;
  expected: string;
  got: string;
}

export interface EvalReport {
  seed: number;
  n: number;
  overall: number;
  per_type: Record<QuestionType, { correct: number; n: number; accuracy: number }>;
  wrong: ItemResult[];
}

/** Answers items [0, n) of `seed`: each scene goes in as PNG bytes, as a user's file would. */
export async function evaluateModel(model: MplugOwlModel, seed: number, n: number): Promise<EvalReport> {
  const per = Object.fromEntries(
    QUESTION_TYPES.map((t) => [t, { correct: 0, n: 0, accuracy: 0 }]),
  ) as EvalReport['per_type'];
  const wrong: ItemResult[] = [];
  let correct = 0;
  for (let i = 0; i < n; i++) {
    const item = vqaItem(seed, i);
    model.resetChat();
    const stream = model.chat({
      messages: [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: item.question }] }],
      images: [encodePng(renderScene(item.scene))],
      max_new_tokens: 8,
      do_sample: false,
    });
    const r = await stream.result;
    const got = normalizeAnswer(r.text);
    per[item.type].n++;
    if (got === item.answer) {
      per[item.type].correct++;
      correct++;
    } else {
      wrong.push({ index: i, type: item.type, question: item.question, expected: item.answer, got: r.text });
    }
  }
  model.resetChat();
  for (const t of QUESTION_TYPES) per[t].accuracy = per[t].n ? per[t].correct / per[t].n : 0;
  return { seed, n, overall: correct / n, per_type: per, wrong };
}
