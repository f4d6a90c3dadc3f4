/**
 * Captions (stage 1) and the four question types (stage 2) of the shapes VQA set, each answered
 * with one lowercase word. Item `i` of a stream is a pure function of `(seed, i)`.
 */
import { OwletError } from '@owlet/errors';

import { mixSeed, Rng } from './rng.js';
import {
  COLORS,
  generateScene,
  SHAPES,
  shapesLeftToRight,
  type ColorName,
  type Scene,
  type ShapeKind,
} from './scene.js';

export const QUESTION_TYPES = ['shape', 'color', 'count', 'exists'] as const;
export type QuestionType = (typeof QUESTION_TYPES)[number];

/** The stage-1 instruction that a caption answers. */
export const CAPTION_PROMPT = 'Describe the image.';

export interface VqaItem {
  scene: Scene;
  type: QuestionType;
  question: string;
  /** One lowercase word: circle|square|triangle, red|green|blue|yellow, 1|2|3, yes|no. */
  answer: string;
}

export interface CaptionItem {
  scene: Scene;
  prompt: string;
  caption: string;
}

export function shapeQuestion(): string {
  return 'What shape is in the image?';
}
export function colorQuestion(kind: ShapeKind): string {
  return `What color is the ${kind}?`;
}
export function countQuestion(): string {
  return 'How many shapes are there?';
}
export function existsQuestion(color: ColorName, kind: ShapeKind): string {
  return `Is there a ${color} ${kind}?`;
}

/** "There are 2 shapes: a red circle and a blue square." (shapes left to right). */
export function caption(scene: Scene): string {
  const names = shapesLeftToRight(scene).map((s) => `a ${s.color} ${s.kind}`);
  const n = names.length;
  const list = n === 1 ? names[0] : `${names.slice(0, -1).join(', ')} and ${names[n - 1]}`;
  return n === 1 ? `There is 1 shape: ${list}.` : `There are ${n} shapes: ${list}.`;
}

/** The stage-1 item `index` of the stream `seed`. */
export function captionItem(seed: number, index: number): CaptionItem {
  const rng = new Rng(mixSeed(seed, index, 0xca9));
  const scene = generateScene(rng);
  return { scene, prompt: CAPTION_PROMPT, caption: caption(scene) };
}

/**
 * The stage-2 item `index` of the stream `seed`: question types cycle shape, color, count, exists,
 * so any 4 consecutive items hold one of each. Colour questions ask about a kind that appears once;
 * half the existence questions are "yes" (a shape of the scene), half "no", mostly near misses
 * (a present kind in another colour, or a present colour on another kind).
 */
export function vqaItem(seed: number, index: number, type?: QuestionType): VqaItem {
  if (!Number.isInteger(index) || index < 0) {
    throw new OwletError('INVALID_ARGUMENT', `item index must be a non-negative integer, got ${index}`);
  }
  const t = type ?? (QUESTION_TYPES[index % QUESTION_TYPES.length] as QuestionType);
  const rng = new Rng(mixSeed(seed, index, 0x9a));
  switch (t) {
    case 'shape': {
      const scene = generateScene(rng, { count: 1 });
      return { scene, type: t, question: shapeQuestion(), answer: (scene.shapes[0] as Scene['shapes'][0]).kind };
    }
    case 'count': {
      const scene = generateScene(rng);
      return { scene, type: t, question: countQuestion(), answer: String(scene.shapes.length) };
    }
    case 'color': {
      for (;;) {
        const scene = generateScene(rng);
        const unique = SHAPES.filter((k) => scene.shapes.filter((s) => s.kind === k).length === 1);
        if (unique.length === 0) continue;
        const kind = rng.pick(unique);
        const target = scene.shapes.find((s) => s.kind === kind) as Scene['shapes'][0];
        return { scene, type: t, question: colorQuestion(kind), answer: target.color };
      }
    }
    case 'exists': {
      const scene = generateScene(rng);
      const present = (c: ColorName, k: ShapeKind) => scene.shapes.some((s) => s.color === c && s.kind === k);
      if (rng.bool()) {
        const s = rng.pick(scene.shapes);
        return { scene, type: t, question: existsQuestion(s.color, s.kind), answer: 'yes' };
      }
      const absent: [ColorName, ShapeKind][] = [];
      const near: [ColorName, ShapeKind][] = [];
      for (const c of COLORS)
        for (const k of SHAPES) {
          if (present(c, k)) continue;
          absent.push([c, k]);
          if (scene.shapes.some((s) => s.color === c || s.kind === k)) near.push([c, k]);
        }
      const [c, k] = near.length > 0 && rng.bool(0.75) ? rng.pick(near) : rng.pick(absent);
      return { scene, type: t, question: existsQuestion(c, k), answer: 'no' };
    }
  }
}

/**
 * The answer normalisation a user would expect: trim, lowercase, strip one final period.
 */
export function normalizeAnswer(text: string): string {
  return text.trim().toLowerCase().replace(/\.$/, '').trim();
}
