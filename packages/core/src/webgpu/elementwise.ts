/**
 * Row-wise and element-wise kernels: fused RMSNorm, LayerNorm, RoPE (rotate_half), SwiGLU and
 * QuickGELU. Each is one dispatch where the composite needs 3–8 tfjs kernels. Float32 throughout.
 */
import type * as tf from '@tensorflow/tfjs-core';

import type { RopeTables } from '../ops/rope.js';
import { type Uniform, engineTensor, runOwned } from './program.js';

const NORM_WG = 64;

/**
 * Sum over a workgroup of 64 (every thread gets the total). `red` is a 64-float workgroup array;
 * a tree of 6 barrier-separated steps.
 */
const REDUCE_FN = /* wgsl */ `
var<workgroup> red: array<f32, ${NORM_WG}>;
fn workgroupSum(v: f32) -> f32 {
  red[localIndex] = v;
  workgroupBarrier();
  for (var s = ${NORM_WG / 2}u; s > 0u; s = s >> 1u) {
    if (localIndex < s) {
      red[localIndex] = red[localIndex] + red[localIndex + s];
    }
    workgroupBarrier();
  }
  let t = red[0];
  workgroupBarrier();
  return t;
}
`;

/** y = w · x / sqrt(mean(x²) + eps) over the last dimension; one workgroup per row. */
export function runRmsNorm(x: tf.Tensor, weight: tf.Tensor | null, eps: number): tf.Tensor {
  const d = x.shape[x.rank - 1] as number;
  const rows = x.size / d;
  const code = `
${REDUCE_FN}
fn main() {
  let d = u32(uniforms.d);
  let base = owletWorkgroupIndex() * d;
  let live = owletWorkgroupIndex() < u32(uniforms.rows);
  var ss = 0.0;
  if (live) {
    for (var i = localIndex; i < d; i += ${NORM_WG}u) {
      let v = X[base + i];
      ss += v * v;
    }
  }
  let inv = inverseSqrt(workgroupSum(ss) / f32(d) + uniforms.eps);
  if (live) {
    for (var i = localIndex; i < d; i += ${NORM_WG}u) {
      result[base + i] = ${weight ? 'Wt[i] * ' : ''}(X[base + i] * inv);
    }
  }
}
`;
  return engineTensor(
    runOwned({
      key: `rmsnorm:w${weight ? 1 : 0}`,
      inputs: weight ? [x, weight] : [x],
      names: weight ? ['X', 'Wt'] : ['X'],
      outputShape: x.shape,
      workgroups: rows,
      workgroupSize: NORM_WG,
      uniforms: [
        { name: 'd', type: 'int32', value: d },
        { name: 'rows', type: 'int32', value: rows },
        { name: 'eps', type: 'float32', value: eps },
      ],
      code,
    }),
  );
}

/** y = (x − mean) / sqrt(var + eps) · w + b (biased variance, two passes over the row). */
export function runLayerNorm(x: tf.Tensor, weight: tf.Tensor | null, bias: tf.Tensor | null, eps: number): tf.Tensor {
  const d = x.shape[x.rank - 1] as number;
  const rows = x.size / d;
  const inputs: tf.Tensor[] = [x];
  const names = ['X'];
  if (weight) {
    inputs.push(weight);
    names.push('Wt');
  }
  if (bias) {
    inputs.push(bias);
    names.push('Bs');
  }
  const code = `
${REDUCE_FN}
fn main() {
  let d = u32(uniforms.d);
  let base = owletWorkgroupIndex() * d;
  let live = owletWorkgroupIndex() < u32(uniforms.rows);
  var s = 0.0;
  if (live) {
    for (var i = localIndex; i < d; i += ${NORM_WG}u) { s += X[base + i]; }
  }
  let mean = workgroupSum(s) / f32(d);
  var ss = 0.0;
  if (live) {
    for (var i = localIndex; i < d; i += ${NORM_WG}u) {
      let c = X[base + i] - mean;
      ss += c * c;
    }
  }
  let inv = inverseSqrt(workgroupSum(ss) / f32(d) + uniforms.eps);
  if (live) {
    for (var i = localIndex; i < d; i += ${NORM_WG}u) {
      result[base + i] = (X[base + i] - mean) * inv${weight ? ' * Wt[i]' : ''}${bias ? ' + Bs[i]' : ''};
    }
  }
}
`;
  return engineTensor(
    runOwned({
      key: `layernorm:w${weight ? 1 : 0}:b${bias ? 1 : 0}`,
      inputs,
      names,
      outputShape: x.shape,
      workgroups: rows,
      workgroupSize: NORM_WG,
      uniforms: [
        { name: 'd', type: 'int32', value: d },
        { name: 'rows', type: 'int32', value: rows },
        { name: 'eps', type: 'float32', value: eps },
      ],
      code,
    }),
  );
}

const EW_WG = 64;

/** One thread per output element; `body` assigns `result[i]`. */
function elementwise(
  key: string,
  inputs: tf.Tensor[],
  names: string[],
  shape: number[],
  body: string,
  uniforms: Uniform[] = [],
): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return engineTensor(
    runOwned({
      key,
      inputs,
      names,
      outputShape: shape,
      workgroups: Math.ceil(n / EW_WG),
      workgroupSize: EW_WG,
      uniforms: [{ name: 'size', type: 'int32', value: n }, ...uniforms],
      code: `
fn main() {
  let i = owletWorkgroupIndex() * ${EW_WG}u + localIndex;
  if (i >= u32(uniforms.size)) { return; }
  ${body}
}
`,
    }),
  );
}

/** silu(gate) · up. */
export function runSwiglu(gate: tf.Tensor, up: tf.Tensor): tf.Tensor {
  return elementwise(
    'swiglu',
    [gate, up],
    ['G', 'U'],
    gate.shape,
    'let g = G[i];\n  result[i] = g / (1.0 + exp(-g)) * U[i];',
  );
}

/** x · σ(1.702 x). */
export function runQuickGelu(x: tf.Tensor): tf.Tensor {
  return elementwise('quickgelu', [x], ['X'], x.shape, 'let v = X[i];\n  result[i] = v / (1.0 + exp(-1.702 * v));');
}

/**
 * x · cos + rotate_half(x) · sin for x [B, H, L, dim] and tables [B or 1, 1, L, dim] (the tables'
 * batch broadcasts when it is 1).
 */
export function runRope(x: tf.Tensor, tables: RopeTables): tf.Tensor {
  const [, h, l, dim] = x.shape as [number, number, number, number];
  const tabBatch = tables.cos.shape[0] as number;
  return elementwise(
    `rope:tb${tabBatch === 1 ? 1 : 'n'}`,
    [x, tables.cos, tables.sin],
    ['X', 'C', 'S'],
    x.shape,
    `let dim = u32(uniforms.dim);
  let half = dim / 2u;
  let c = i % dim;
  let pos = (i / dim) % u32(uniforms.len);
  let b = i / (dim * u32(uniforms.len) * u32(uniforms.heads));
  let t = (${tabBatch === 1 ? '0u' : 'b'} * u32(uniforms.len) + pos) * dim + c;
  var rot: f32;
  if (c < half) { rot = -X[i + half]; } else { rot = X[i - half]; }
  result[i] = X[i] * C[t] + rot * S[t];`,
    [
      { name: 'dim', type: 'int32', value: dim },
      { name: 'len', type: 'int32', value: l },
      { name: 'heads', type: 'int32', value: h },
    ],
  );
}
