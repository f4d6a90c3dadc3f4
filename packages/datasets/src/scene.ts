/**
 * Scenes of the shapes VQA set (issue #17): a square image 64–256 px on a light background (each
 * RGB channel 200–255) with 1–3 non-overlapping filled shapes — circle, square, upright triangle —
 * each 20–45 % of the image side, at random positions, in red ≈ (220, 40, 40), green ≈ (40, 170, 60),
 * blue ≈ (40, 80, 220) or yellow ≈ (230, 200, 40), each channel jittered by up to ±30 (yellow ±25),
 * edges anti-aliased or not.
 */
import { OwletError } from '@owlet/errors';

import type { Rng } from './rng.js';

export const SHAPES = ['circle', 'square', 'triangle'] as const;
export type ShapeKind = (typeof SHAPES)[number];
export const COLORS = ['red', 'green', 'blue', 'yellow'] as const;
export type ColorName = (typeof COLORS)[number];

/** The nominal colours and their per-channel jitter. */
export const COLOR_SPECS: Readonly<Record<ColorName, { rgb: readonly [number, number, number]; jitter: number }>> =
  Object.freeze({
    red: { rgb: [220, 40, 40], jitter: 30 },
    green: { rgb: [40, 170, 60], jitter: 30 },
    blue: { rgb: [40, 80, 220], jitter: 30 },
    yellow: { rgb: [230, 200, 40], jitter: 25 },
  });

export interface SceneShape {
  kind: ShapeKind;
  color: ColorName;
  /** The jittered fill colour. */
  rgb: [number, number, number];
  /** Bounding box in pixels: left, top, width, height (width = height for circle and square). */
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface Scene {
  /** Image side in pixels. */
  size: number;
  background: [number, number, number];
  shapes: SceneShape[];
  antialias: boolean;
}

export interface SceneOptions {
  /** Number of shapes (default: uniform in 1–3). */
  count?: 1 | 2 | 3;
  /** Image side range, inclusive (default 64–256). */
  min_size?: number;
  max_size?: number;
  /** Force shape kinds / colours (in order); the rest are random. */
  kinds?: readonly ShapeKind[];
  colors?: readonly ColorName[];
}

/** The fraction of the side a shape spans. */
export const SHAPE_EXTENT: readonly [number, number] = [0.2, 0.45];

function jitterColor(rng: Rng, color: ColorName): [number, number, number] {
  const { rgb, jitter } = COLOR_SPECS[color];
  return rgb.map((c) => Math.min(255, Math.max(0, c + rng.int(-jitter, jitter)))) as [number, number, number];
}

function overlaps(a: SceneShape, b: SceneShape, gap: number): boolean {
  return !(a.x + a.w + gap <= b.x || b.x + b.w + gap <= a.x || a.y + a.h + gap <= b.y || b.y + b.h + gap <= a.y);
}

/**
 * A random scene. Shapes do not overlap: their bounding boxes are at least 1 px apart (a circle
 * or triangle never touches another shape either). Deterministic for a given `rng` state.
 */
export function generateScene(rng: Rng, options: SceneOptions = {}): Scene {
  const minSize = options.min_size ?? 64;
  const maxSize = options.max_size ?? 256;
  if (!Number.isInteger(minSize) || !Number.isInteger(maxSize) || minSize < 16 || maxSize < minSize) {
    throw new OwletError(
      'INVALID_ARGUMENT',
      `image side range must be integers 16 ≤ min ≤ max, got ${minSize}–${maxSize}`,
    );
  }
  const count = options.count ?? (rng.int(1, 3) as 1 | 2 | 3);
  if (![1, 2, 3].includes(count)) throw new OwletError('INVALID_ARGUMENT', `count must be 1, 2 or 3, got ${count}`);
  const size = rng.int(minSize, maxSize);
  const background: [number, number, number] = [rng.int(200, 255), rng.int(200, 255), rng.int(200, 255)];
  const antialias = rng.bool();
  for (let attempt = 0; attempt < 1000; attempt++) {
    const shapes: SceneShape[] = [];
    let ok = true;
    for (let i = 0; i < count && ok; i++) {
      const kind = options.kinds?.[i] ?? rng.pick(SHAPES);
      const color = options.colors?.[i] ?? rng.pick(COLORS);
      const lo = Math.ceil(SHAPE_EXTENT[0] * size);
      const hi = Math.floor(SHAPE_EXTENT[1] * size);
      const w = rng.int(lo, hi);
      // An upright triangle: base w, height between 0.8 w and w (an equilateral one is 0.866 w).
      const h = kind === 'triangle' ? Math.max(lo, Math.round(w * rng.uniform(0.8, 1))) : w;
      let placed = false;
      for (let t = 0; t < 50 && !placed; t++) {
        const s: SceneShape = {
          kind,
          color,
          rgb: [0, 0, 0],
          x: rng.int(0, size - w),
          y: rng.int(0, size - h),
          w,
          h,
        };
        if (shapes.every((o) => !overlaps(s, o, 1))) {
          s.rgb = jitterColor(rng, color);
          shapes.push(s);
          placed = true;
        }
      }
      ok = placed;
    }
    if (ok) return { size, background, shapes, antialias };
  }
  throw new OwletError('INVALID_ARGUMENT', `could not place ${count} shapes on a ${size} px image`);
}

/** Shapes ordered left to right (then top to bottom) by their centres: the caption order. */
export function shapesLeftToRight(scene: Scene): SceneShape[] {
  return [...scene.shapes].sort((a, b) => a.x + a.w / 2 - (b.x + b.w / 2) || a.y + a.h / 2 - (b.y + b.h / 2));
}
