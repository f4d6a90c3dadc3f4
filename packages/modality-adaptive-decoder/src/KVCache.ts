import * as tf from '@tensorflow/tfjs-core';
import { ErrorCode, OwletError, formatShape, type KVSegment as CoreKVSegment } from '@owlet/core';

export type KVCacheGrowth = 'segmented' | 'contiguous';

/** One segment of a layer's cache: k [B, H_kv, n, head_dim] post-RoPE, v the same (core's KVSegment). */
export type KVSegment = Readonly<CoreKVSegment>;

export interface KVCacheOptions {
  growth?: KVCacheGrowth;
}

/**
 * The key/value cache of the decoder: per layer, the post-RoPE keys and values of every position
 * seen so far, [B, H_kv, n, head_dim]. Plays the role of transformers' `past_key_values` tuple.
 *
 * Growth. tfjs tensors are immutable, so a cache kept as one contiguous tensor per layer must be
 * rebuilt (a full copy) on every decode step. This cache is instead a list of segments per layer
 * whose lengths follow a binary counter: a new segment is merged with the one before it while it is
 * at least as long (`growth: 'segmented'`, the default). A token is therefore copied O(log n) times
 * over its lifetime instead of once per step, and a layer holds at most ⌈log₂ n⌉ + 1 segments; the
 * decoder attends over the segments without concatenating them. `growth: 'contiguous'` keeps one
 * segment (a full copy per step) and exists for comparison (see bench/ and the README).
 *
 * Content. Image positions keep the keys/values computed with the image (`multiway.1`) projections;
 * nothing is recomputed when text follows.
 *
 * Ownership. The cache owns its tensors: `dispose()` (or `using`) frees them. `truncate(n)` /
 * `rollback(k)` drop positions for multi-turn reuse.
 */
export class KVCache {
  readonly numLayers: number;
  readonly growth: KVCacheGrowth;
  private readonly layers: KVSegment[][];
  private readonly lengths: number[];
  private disposed = false;

  constructor(numLayers: number, options: KVCacheOptions = {}) {
    if (!Number.isSafeInteger(numLayers) || numLayers < 1) {
      throw new OwletError(
        ErrorCode.INVALID_ARGUMENT,
        `KVCache: numLayers must be a positive integer, got ${numLayers}`,
      );
    }
    const growth = options.growth ?? 'segmented';
    if (growth !== 'segmented' && growth !== 'contiguous') {
      throw new OwletError(
        ErrorCode.INVALID_ARGUMENT,
        `KVCache: growth must be 'segmented' or 'contiguous', got ${String(growth)}`,
      );
    }
    this.numLayers = numLayers;
    this.growth = growth;
    this.layers = Array.from({ length: numLayers }, () => []);
    this.lengths = new Array<number>(numLayers).fill(0);
  }

  /** Number of cached positions (every layer holds the same number between forwards). */
  get length(): number {
    this.assertUsable();
    return this.lengths[0] as number;
  }

  /** Cached positions of one layer (differs from `length` only in the middle of a forward). */
  layerLength(layer: number): number {
    this.checkLayer(layer);
    return this.lengths[layer] as number;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /** True when every layer holds the same number of positions. */
  get isConsistent(): boolean {
    return this.lengths.every((n) => n === this.lengths[0]);
  }

  /** Batch size of the cached sequences (null while empty). */
  get batchSize(): number | null {
    const s = this.layers[0]?.[0];
    return s ? (s.k.shape[0] as number) : null;
  }

  /** Bytes held by the cache. */
  get byteLength(): number {
    let n = 0;
    for (const segs of this.layers) for (const s of segs) n += (s.k.size + s.v.size) * 4;
    return n;
  }

  /** The segments of a layer, oldest first. The cache keeps ownership. */
  segments(layer: number): readonly KVSegment[] {
    this.checkLayer(layer);
    return this.layers[layer] as KVSegment[];
  }

  /** Number of segments of a layer. */
  numSegments(layer: number): number {
    return this.segments(layer).length;
  }

  /** Contiguous keys of a layer, [B, H_kv, n, head_dim] (a new tensor the caller owns). */
  keys(layer: number): tf.Tensor {
    return this.contiguous(layer, 'k');
  }

  /** Contiguous values of a layer (a new tensor the caller owns). */
  values(layer: number): tf.Tensor {
    return this.contiguous(layer, 'v');
  }

  private contiguous(layer: number, which: 'k' | 'v'): tf.Tensor {
    const segs = this.segments(layer);
    const [first] = segs;
    if (!first) {
      throw new OwletError(ErrorCode.INVALID_ARGUMENT, `KVCache: layer ${layer} is empty`);
    }
    return tf.tidy(() =>
      segs.length === 1
        ? tf.clone(first[which])
        : tf.concat(
            segs.map((s) => s[which]),
            2,
          ),
    );
  }

  /**
   * Appends keys/values [B, H_kv, n, head_dim] of new positions to a layer. The cache keeps its own
   * handle on the data (the caller may dispose its tensors); works inside a tidy scope.
   */
  append(layer: number, k: tf.Tensor, v: tf.Tensor): void {
    this.checkLayer(layer);
    if (k.rank !== 4 || v.rank !== 4 || k.shape.some((d, i) => d !== v.shape[i])) {
      throw new OwletError(
        ErrorCode.SHAPE_MISMATCH,
        `KVCache.append: keys ${formatShape(k.shape)} and values ${formatShape(v.shape)} must both be [B, H_kv, n, head_dim]`,
      );
    }
    const segs = this.layers[layer] as KVSegment[];
    const first = segs[0];
    if (first) {
      const [b, h, , d] = first.k.shape;
      if (k.shape[0] !== b || k.shape[1] !== h || k.shape[3] !== d) {
        throw new OwletError(
          ErrorCode.SHAPE_MISMATCH,
          `KVCache.append: layer ${layer} holds [${b}, ${h}, n, ${d}], got ${formatShape(k.shape)}`,
        );
      }
    }
    const n = k.shape[2] as number;
    if (n === 0) return;
    segs.push({ k: tf.keep(tf.clone(k)), v: tf.keep(tf.clone(v)) });
    this.lengths[layer] = (this.lengths[layer] as number) + n;
    this.mergeTail(segs);
  }

  private mergeTail(segs: KVSegment[]): void {
    const len = (s: KVSegment) => s.k.shape[2] as number;
    for (;;) {
      const last = segs[segs.length - 1];
      const prev = segs[segs.length - 2];
      if (!last || !prev) break; // fewer than two segments
      if (this.growth === 'segmented' && len(last) < len(prev)) break;
      const merged: KVSegment = tf.tidy(() => ({
        k: tf.keep(tf.concat([prev.k, last.k], 2)),
        v: tf.keep(tf.concat([prev.v, last.v], 2)),
      }));
      tf.dispose([prev.k, prev.v, last.k, last.v]);
      segs.splice(segs.length - 2, 2, merged);
    }
  }

  /** Keeps the first `length` positions of every layer (for multi-turn reuse and rollback). */
  truncate(length: number): void {
    this.assertUsable();
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new OwletError(
        ErrorCode.INVALID_ARGUMENT,
        `KVCache.truncate: length must be a non-negative integer, got ${length}`,
      );
    }
    for (let l = 0; l < this.numLayers; l++) {
      if ((this.lengths[l] as number) <= length) continue;
      const segs = this.layers[l] as KVSegment[];
      let start = 0;
      const kept: KVSegment[] = [];
      for (const s of segs) {
        const n = s.k.shape[2] as number;
        if (start + n <= length) {
          kept.push(s);
        } else if (start < length) {
          const keep = length - start;
          kept.push(
            tf.tidy(() => ({
              k: tf.keep(tf.slice(s.k, [0, 0, 0, 0], [-1, -1, keep, -1])),
              v: tf.keep(tf.slice(s.v, [0, 0, 0, 0], [-1, -1, keep, -1])),
            })),
          );
          tf.dispose([s.k, s.v]);
        } else {
          tf.dispose([s.k, s.v]);
        }
        start += n;
      }
      segs.splice(0, segs.length, ...kept);
      this.lengths[l] = length;
    }
  }

  /** Drops the last `count` positions. */
  rollback(count: number): void {
    this.assertUsable();
    if (!Number.isSafeInteger(count) || count < 0 || count > this.length) {
      throw new OwletError(
        ErrorCode.INVALID_ARGUMENT,
        `KVCache.rollback: count must be an integer in [0, ${this.length}], got ${count}`,
      );
    }
    this.truncate(this.length - count);
  }

  /** Empties the cache (keeps it usable). */
  clear(): void {
    this.truncate(0);
  }

  dispose(): void {
    if (this.disposed) return;
    for (const segs of this.layers) {
      for (const s of segs) tf.dispose([s.k, s.v]);
      segs.length = 0;
    }
    this.lengths.fill(0);
    this.disposed = true;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  private assertUsable(): void {
    if (this.disposed) throw new OwletError(ErrorCode.DISPOSED, 'KVCache was used after dispose()');
  }

  private checkLayer(layer: number): void {
    this.assertUsable();
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.numLayers) {
      throw new OwletError(ErrorCode.INVALID_ARGUMENT, `KVCache: layer ${layer} out of range [0, ${this.numLayers})`);
    }
  }
}
