/** Rasterises a {@link Scene} to interleaved RGB bytes (row-major, 3 bytes a pixel). */
import type { Scene, SceneShape } from './scene.js';

export interface RgbImage {
  readonly data: Uint8Array;
  readonly width: number;
  readonly height: number;
  readonly channels: 3;
}

/** Whether the point (px, py), in pixel units with (0, 0) the top-left corner, lies in the shape. */
export function insideShape(s: SceneShape, px: number, py: number): boolean {
  switch (s.kind) {
    case 'circle': {
      const r = s.w / 2;
      const dx = px - (s.x + r);
      const dy = py - (s.y + r);
      return dx * dx + dy * dy <= r * r;
    }
    case 'square':
      return px >= s.x && px <= s.x + s.w && py >= s.y && py <= s.y + s.h;
    case 'triangle': {
      // Upright: apex at the top centre, base along the bottom of the box.
      if (py < s.y || py > s.y + s.h) return false;
      const half = ((py - s.y) / s.h) * (s.w / 2);
      return Math.abs(px - (s.x + s.w / 2)) <= half;
    }
  }
}

/** Sub-samples per pixel side when anti-aliasing (4 × 4 = 16 coverage samples). */
const AA = 4;

/**
 * Renders the scene: hard edges sample each pixel at its centre; anti-aliased edges blend the
 * shape colour over the background by the covered fraction of the pixel.
 */
export function renderScene(scene: Scene): RgbImage {
  const n = scene.size;
  const data = new Uint8Array(n * n * 3);
  const [br, bg, bb] = scene.background;
  for (let i = 0; i < n * n; i++) {
    data[i * 3] = br;
    data[i * 3 + 1] = bg;
    data[i * 3 + 2] = bb;
  }
  for (const s of scene.shapes) {
    const x0 = Math.max(0, Math.floor(s.x));
    const y0 = Math.max(0, Math.floor(s.y));
    const x1 = Math.min(n - 1, Math.ceil(s.x + s.w));
    const y1 = Math.min(n - 1, Math.ceil(s.y + s.h));
    for (let y = y0; y <= y1; y++) {
      for (let x = x0; x <= x1; x++) {
        let cover: number;
        if (scene.antialias) {
          let hits = 0;
          for (let sy = 0; sy < AA; sy++)
            for (let sx = 0; sx < AA; sx++) if (insideShape(s, x + (sx + 0.5) / AA, y + (sy + 0.5) / AA)) hits++;
          cover = hits / (AA * AA);
        } else {
          cover = insideShape(s, x + 0.5, y + 0.5) ? 1 : 0;
        }
        if (cover === 0) continue;
        const o = (y * n + x) * 3;
        for (let c = 0; c < 3; c++) {
          const under = data[o + c] as number;
          data[o + c] = Math.round(under + ((s.rgb[c] as number) - under) * cover);
        }
      }
    }
  }
  return { data, width: n, height: n, channels: 3 };
}
