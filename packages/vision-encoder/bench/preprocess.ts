/**
 * Preprocessing benchmark: ms per image for each entry point on a 640×480 and a 4000×3000 image
 * (decode excluded and included). Run: `npx tsx packages/vision-encoder/bench/preprocess.ts`.
 */
import sharp from 'sharp';

import {
  MplugOwlImageProcessor,
  decodeImageNode,
  type DecodedImage,
  type EntryPoint,
} from '../src/preprocess/index.js';

async function makeJpeg(w: number, h: number): Promise<Uint8Array> {
  // a smooth gradient with texture so JPEG decoding does real work
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      data[i] = (x * 255) / w;
      data[i + 1] = (y * 255) / h;
      data[i + 2] = ((x ^ y) & 255) >> 1;
    }
  return new Uint8Array(
    await sharp(data, { raw: { width: w, height: h, channels: 3 } })
      .jpeg({ quality: 90 })
      .toBuffer(),
  );
}

function time(fn: () => void, minMs = 1500, maxIters = 50): number {
  fn(); // warm-up
  let n = 0;
  const t0 = performance.now();
  while (n < maxIters && (n < 3 || performance.now() - t0 < minMs)) {
    fn();
    n++;
  }
  return (performance.now() - t0) / n;
}

const entries: [EntryPoint, MplugOwlImageProcessor][] = [
  ['pad', MplugOwlImageProcessor.owl2({ entryPoint: 'pad' })],
  ['resize', MplugOwlImageProcessor.owl2({ entryPoint: 'resize' })],
  ['clip_default', MplugOwlImageProcessor.owl2({ entryPoint: 'clip_default' })],
  ['v1', MplugOwlImageProcessor.owl1()],
];

const rows: Record<string, string>[] = [];
for (const [w, h] of [
  [640, 480],
  [4000, 3000],
] as const) {
  const jpeg = await makeJpeg(w, h);
  const decodeMs = await (async () => {
    await decodeImageNode(jpeg);
    const n = w > 1000 ? 5 : 20;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await decodeImageNode(jpeg);
    return (performance.now() - t0) / n;
  })();
  const img: DecodedImage = await decodeImageNode(jpeg);
  for (const [name, proc] of entries) {
    const ms = time(() => proc.processDecoded(img), w > 1000 ? 4000 : 1500, w > 1000 ? 8 : 50);
    rows.push({
      image: `${w}×${h}`,
      entry: name,
      'preprocess ms': ms.toFixed(1),
      'decode ms (sharp)': decodeMs.toFixed(1),
      'total ms': (ms + decodeMs).toFixed(1),
    });
  }
}
console.table(rows);
