/**
 * The fixed sin-cos position tables of the mPLUG-Owl2 abstractor (MAE style), computed in float32
 * the way numpy computes them in the reference (`get_1d_sincos_pos_embed_from_grid`,
 * `get_2d_sincos_pos_embed` — X-PLUG/mPLUG-Owl@0f3068f mPLUG-Owl2/mplug_owl2/model/visual_encoder.py).
 * The checkpoint does not carry these buffers, so they are computed at load time.
 */
import { ErrorCode, OwletError } from '@owlet/core';

const f32 = Math.fround;

function checkDim(dim: number, multiple: number, what: string): void {
  if (!Number.isSafeInteger(dim) || dim < multiple || dim % multiple !== 0) {
    throw new OwletError(
      ErrorCode.INVALID_ARGUMENT,
      `${what}: embedding width must be a positive multiple of ${multiple}, got ${dim}`,
    );
  }
}

/** ω_k = 1 / 10000^(k / (dim/2)), k = 0 … dim/2 − 1, each step rounded to float32 as numpy does. */
function omegas(dim: number): Float32Array {
  const half = dim / 2;
  const out = new Float32Array(half);
  for (let k = 0; k < half; k++) {
    const e = f32(k / half);
    out[k] = f32(1 / f32(10000 ** e));
  }
  return out;
}

/**
 * Writes E1(dim, p) into `out` at `offset`: `[sin(p·ω_0..ω_{dim/2−1}), cos(p·ω_0..ω_{dim/2−1})]` —
 * all sines first, then all cosines.
 */
function writeSinCos(out: Float32Array, offset: number, omega: Float32Array, p: number): void {
  const half = omega.length;
  for (let k = 0; k < half; k++) {
    const a = f32(p * (omega[k] as number));
    out[offset + k] = Math.sin(a);
    out[offset + half + k] = Math.cos(a);
  }
}

/** 1-D table [positions.length, dim]: row i = E1(dim, positions[i]). The query table uses 0 … Q−1. */
export function sincos1d(dim: number, positions: ArrayLike<number>): Float32Array {
  checkDim(dim, 2, 'sincos1d');
  const omega = omegas(dim);
  const out = new Float32Array(positions.length * dim);
  for (let i = 0; i < positions.length; i++) writeSinCos(out, i * dim, omega, f32(positions[i] as number));
  return out;
}

/**
 * 2-D table for a `gridSize × gridSize` patch grid, row-major (patch n = row·gridSize + col):
 * row n = `[E1(dim/2, col), E1(dim/2, row)]` — the first half encodes the column, the second the row
 * (the reference's `np.meshgrid(grid_w, grid_h)` puts w first). With `clsToken` a zero row comes
 * first. Shape [(clsToken ? 1 : 0) + gridSize², dim].
 */
export function sincos2d(dim: number, gridSize: number, clsToken: boolean): Float32Array {
  checkDim(dim, 4, 'sincos2d');
  if (!Number.isSafeInteger(gridSize) || gridSize < 1) {
    throw new OwletError(ErrorCode.INVALID_ARGUMENT, `sincos2d: grid size must be a positive integer, got ${gridSize}`);
  }
  const half = dim / 2;
  const omega = omegas(half);
  const first = clsToken ? 1 : 0;
  const out = new Float32Array((first + gridSize * gridSize) * dim);
  for (let row = 0; row < gridSize; row++) {
    for (let col = 0; col < gridSize; col++) {
      const base = (first + row * gridSize + col) * dim;
      writeSinCos(out, base, omega, col);
      writeSinCos(out, base + half, omega, row);
    }
  }
  return out;
}
