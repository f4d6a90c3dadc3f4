/**
 * y = x · Wᵀ + b on WebGPU for fp32 / fp16 / q8 / q4 weights in the layout of `weights.ts`
 * (or a float32 `[out, in]` tfjs tensor), dequantizing in registers:
 *
 * - **GEMV** (decode: ≤ `GEMV_MAX_ROWS` rows of x): a workgroup of 64 threads computes 4 output
 *   features, 16 threads per feature striding over its 32-value blocks (vec4 loads of x), partial
 *   sums reduced through workgroup memory. Each weight is read once for all rows of x.
 * - **GEMM** (prefill, the vision tower): 32×32 output tiles, 64 threads with 4×4 outputs each;
 *   per 32-wide K step the x tile and the *dequantized* weight tile are staged in workgroup memory
 *   (each thread decodes half a block), then 32 rank-1 updates.
 *
 * Arithmetic is float32 (accumulation included). Quantized blocks are summed as d·Σ(q − 8)·x per
 * block (Q4_0) or d·Σq·x (Q8_0), the block scale decoded from its fp16 bits with `unpack2x16float`.
 * A weight split into chunks (`maxStorageBufferBindingSize`) runs one dispatch per chunk, each
 * writing its columns of the same output tensor.
 */
import type * as tf from '@tensorflow/tfjs-core';

import type { WeightDType } from '../quant/packed.js';
import { engineTensor, runOwned, webgpuBackend } from './program.js';
import type { GpuWeightChunk } from './weights.js';

/** Rows of x up to which the GEMV kernel runs (above: the tiled GEMM). */
export const GEMV_MAX_ROWS = 8;

const GEMV_WG = 64;
const GEMV_LANES = 16;
const GEMV_ROWS_PER_WG = GEMV_WG / GEMV_LANES;
const TILE = 32;

/** A weight operand: float32 `[out, in]` tensor chunks or packed chunks, all of one dtype. */
export interface LinearWeightOperand {
  dtype: WeightDType;
  chunks: readonly GpuWeightChunk[];
}

/** WGSL: the float value of the fp16 scale of block `i` (row-major over the chunk). */
const SCALE_FN = /* wgsl */ `
fn blockScale(i: u32) -> f32 {
  let w = u32(D[i >> 1u]);
  return unpack2x16float(w)[i & 1u];
}
`;

const NIBBLE_SHIFTS = 'vec4<u32>(0u, 8u, 16u, 24u)';

/** The GEMV inner step for one unit (a 32-value block, or 4 values for float weights) of row `r`. */
function gemvStep(dtype: WeightDType, n: number): { unitsExpr: string; body: string } {
  const accum = (dotExpr: (m: number) => string) =>
    Array.from({ length: n }, (_, m) => `acc[${m}] += ${dotExpr(m)};`).join('\n        ');
  switch (dtype) {
    case 'q4':
      return {
        unitsExpr: 'nb',
        body: `
        let bi = r * nb + u;
        let d = blockScale(bi);
        let q = vec4<u32>(W[bi]);
        var s: array<f32, ${n}>;
        for (var i = 0u; i < 4u; i++) {
          let qi = vec4<u32>(q[i]);
          let lo = vec4<f32>((qi >> ${NIBBLE_SHIFTS}) & vec4<u32>(15u)) - vec4<f32>(8.0);
          let hi = vec4<f32>((qi >> (${NIBBLE_SHIFTS} + vec4<u32>(4u))) & vec4<u32>(15u)) - vec4<f32>(8.0);
          ${Array.from({ length: n }, (_, m) => `s[${m}] += dot(lo, X[${m}u * k4 + u * 8u + i]) + dot(hi, X[${m}u * k4 + u * 8u + 4u + i]);`).join('\n          ')}
        }
        ${accum((m) => `d * s[${m}]`)}`,
      };
    case 'q8':
      return {
        unitsExpr: 'nb',
        body: `
        let bi = r * nb + u;
        let d = blockScale(bi);
        var s: array<f32, ${n}>;
        for (var h = 0u; h < 2u; h++) {
          let q = W[bi * 2u + h];
          for (var i = 0u; i < 4u; i++) {
            let v = vec4<f32>((vec4<i32>(q[i]) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
            ${Array.from({ length: n }, (_, m) => `s[${m}] += dot(v, X[${m}u * k4 + u * 8u + h * 4u + i]);`).join('\n            ')}
          }
        }
        ${accum((m) => `d * s[${m}]`)}`,
      };
    case 'fp16':
      return {
        unitsExpr: 'k4',
        body: `
        let p = W[r * k4 + u];
        let w = vec4<f32>(unpack2x16float(u32(p.x)), unpack2x16float(u32(p.y)));
        ${accum((m) => `dot(w, X[${m}u * k4 + u])`)}`,
      };
    case 'fp32':
      return {
        unitsExpr: 'k4',
        body: `
        let w = W[r * k4 + u];
        ${accum((m) => `dot(w, X[${m}u * k4 + u])`)}`,
      };
  }
}

function gemvCode(dtype: WeightDType, n: number, bias: boolean): string {
  const { unitsExpr, body } = gemvStep(dtype, n);
  const quant = dtype === 'q4' || dtype === 'q8';
  return `
${quant ? SCALE_FN : ''}
var<workgroup> partial: array<f32, ${GEMV_WG * n}>;

fn main() {
  let k4 = u32(uniforms.k4);
  let nb = k4 / 8u;
  let rows = u32(uniforms.rows);
  let lane = localIndex % ${GEMV_LANES}u;
  let sub = localIndex / ${GEMV_LANES}u;
  let r = owletWorkgroupIndex() * ${GEMV_ROWS_PER_WG}u + sub;
  var acc: array<f32, ${n}>;
  if (r < rows) {
    for (var u = lane; u < ${unitsExpr}; u += ${GEMV_LANES}u) {
      ${body}
    }
  }
  for (var m = 0u; m < ${n}u; m++) {
    partial[m * ${GEMV_WG}u + localIndex] = acc[m];
  }
  workgroupBarrier();
  if (lane == 0u && r < rows) {
    let col = u32(uniforms.rowStart) + r;
    let outF = u32(uniforms.outF);
    for (var m = 0u; m < ${n}u; m++) {
      var t = 0.0;
      for (var l = 0u; l < ${GEMV_LANES}u; l++) {
        t += partial[m * ${GEMV_WG}u + sub * ${GEMV_LANES}u + l];
      }
      result[m * outF + col] = t${bias ? ' + Bias[col]' : ''};
    }
  }
}
`;
}

/** WGSL that decodes half `h` (16 values) of the weight tile row `wr`, K step `k0`, into `ws`. */
function gemmLoadW(dtype: WeightDType): string {
  const store = (vec: string, v: string) =>
    `let e = ${vec};\n      for (var c = 0u; c < 4u; c++) { ws[lr * ${TILE + 1}u + h * 16u + ${v} * 4u + c] = e[c]; }`;
  switch (dtype) {
    case 'q4':
      return `
    if (wr < rows) {
      let bi = wr * nb + k0 / 32u;
      let d = blockScale(bi);
      let q = vec4<u32>(W[bi]);
      for (var i = 0u; i < 4u; i++) {
        let qi = vec4<u32>(q[i]);
        let v = vec4<f32>((qi >> (${NIBBLE_SHIFTS} + vec4<u32>(4u * h))) & vec4<u32>(15u)) - vec4<f32>(8.0);
        ${store('v * d', 'i')}
      }
    } else {
      for (var c = 0u; c < 16u; c++) { ws[lr * ${TILE + 1}u + h * 16u + c] = 0.0; }
    }`;
    case 'q8':
      return `
    if (wr < rows) {
      let bi = wr * nb + k0 / 32u;
      let d = blockScale(bi);
      let q = W[bi * 2u + h];
      for (var i = 0u; i < 4u; i++) {
        let v = vec4<f32>((vec4<i32>(q[i]) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
        ${store('v * d', 'i')}
      }
    } else {
      for (var c = 0u; c < 16u; c++) { ws[lr * ${TILE + 1}u + h * 16u + c] = 0.0; }
    }`;
    case 'fp16':
    case 'fp32': {
      const load =
        dtype === 'fp16'
          ? `let p = W[wr * k4 + c4];\n        w = vec4<f32>(unpack2x16float(u32(p.x)), unpack2x16float(u32(p.y)));`
          : `w = W[wr * k4 + c4];`;
      return `
    for (var v = 0u; v < 4u; v++) {
      let c4 = k0 / 4u + h * 4u + v;
      var w = vec4<f32>(0.0);
      if (wr < rows && c4 < k4) {
        ${load}
      }
      ${store('w', 'v')}
    }`;
    }
  }
}

function gemmCode(dtype: WeightDType, bias: boolean): string {
  const quant = dtype === 'q4' || dtype === 'q8';
  const S = TILE + 1;
  return `
${quant ? SCALE_FN : ''}
var<workgroup> xs: array<f32, ${TILE * S}>;
var<workgroup> ws: array<f32, ${TILE * S}>;

fn main() {
  let k4 = u32(uniforms.k4);
  let nb = k4 / 8u;
  let rows = u32(uniforms.rows);
  let nx = u32(uniforms.n);
  let tilesOut = (rows + ${TILE - 1}u) / ${TILE}u;
  let wg = owletWorkgroupIndex();
  let tn = wg % tilesOut;
  let tm = wg / tilesOut;
  let tx = localIndex % 8u;
  let ty = localIndex / 8u;
  let lr = localIndex / 2u;
  let h = localIndex % 2u;
  let xr = tm * ${TILE}u + lr;
  let wr = tn * ${TILE}u + lr;
  var acc: array<vec4<f32>, 4>;
  for (var k0 = 0u; k0 < k4 * 4u; k0 += ${TILE}u) {
    for (var v = 0u; v < 4u; v++) {
      let c4 = k0 / 4u + h * 4u + v;
      var e = vec4<f32>(0.0);
      if (xr < nx && c4 < k4) {
        e = X[xr * k4 + c4];
      }
      for (var c = 0u; c < 4u; c++) { xs[lr * ${S}u + h * 16u + v * 4u + c] = e[c]; }
    }
    ${gemmLoadW(dtype)}
    workgroupBarrier();
    for (var kk = 0u; kk < ${TILE}u; kk++) {
      let b = vec4<f32>(ws[(tx * 4u) * ${S}u + kk], ws[(tx * 4u + 1u) * ${S}u + kk],
                        ws[(tx * 4u + 2u) * ${S}u + kk], ws[(tx * 4u + 3u) * ${S}u + kk]);
      for (var i = 0u; i < 4u; i++) {
        acc[i] += xs[(ty * 4u + i) * ${S}u + kk] * b;
      }
    }
    workgroupBarrier();
  }
  let outF = u32(uniforms.outF);
  let rowStart = u32(uniforms.rowStart);
  for (var i = 0u; i < 4u; i++) {
    let row = tm * ${TILE}u + ty * 4u + i;
    for (var j = 0u; j < 4u; j++) {
      let c = tn * ${TILE}u + tx * 4u + j;
      if (row < nx && c < rows) {
        result[row * outF + rowStart + c] = acc[i][j]${bias ? ' + Bias[rowStart + c]' : ''};
      }
    }
  }
}
`;
}

/** Vector width of the weight binding. */
function weightComponents(dtype: WeightDType): number {
  return dtype === 'fp16' ? 2 : 4;
}

/**
 * Runs the product for x [N, in] (float32) → [N, out]. The caller has checked shapes, that
 * in % 4 == 0 and (quantized) in % 32 == 0.
 */
export function runLinear(x2: tf.Tensor, w: LinearWeightOperand, outF: number, bias: tf.Tensor | null): tf.Tensor {
  const [n, inF] = x2.shape as [number, number];
  const k4 = inF / 4;
  const quant = w.dtype === 'q4' || w.dtype === 'q8';
  const gemv = n <= GEMV_MAX_ROWS;
  let output: tf.TensorInfo | undefined;
  try {
    for (const chunk of w.chunks) {
      const inputs: tf.TensorInfo[] = [x2, ...chunk.tensors];
      const names = ['X', 'W', ...(quant ? ['D'] : [])];
      const components = [4, weightComponents(w.dtype), ...(quant ? [1] : [])];
      if (bias) {
        inputs.push(bias);
        names.push('Bias');
        components.push(1);
      }
      const uniforms = [
        { name: 'k4', type: 'int32' as const, value: k4 },
        { name: 'rows', type: 'int32' as const, value: chunk.rows },
        { name: 'rowStart', type: 'int32' as const, value: chunk.rowStart },
        { name: 'outF', type: 'int32' as const, value: outF },
        { name: 'n', type: 'int32' as const, value: n },
      ];
      output = runOwned({
        key: gemv ? `gemv:${w.dtype}:n${n}:b${bias ? 1 : 0}` : `gemm:${w.dtype}:t${TILE}:b${bias ? 1 : 0}`,
        inputs,
        names,
        components,
        outputShape: [n, outF],
        ...(output ? { output } : {}),
        workgroups: gemv
          ? Math.ceil(chunk.rows / GEMV_ROWS_PER_WG)
          : Math.ceil(chunk.rows / TILE) * Math.ceil(n / TILE),
        workgroupSize: GEMV_WG,
        uniforms,
        code: gemv ? gemvCode(w.dtype, n, bias !== null) : gemmCode(w.dtype, bias !== null),
      });
    }
  } catch (e) {
    if (output) webgpuBackend().disposeData(output.dataId);
    throw e;
  }
  if (!output) throw new Error('runLinear: a weight without chunks');
  return engineTensor(output);
}
