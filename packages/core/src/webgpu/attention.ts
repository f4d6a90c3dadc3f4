/**
 * Scaled dot-product attention over a KV cache held in segments, without a [H, Lq, Lk] score
 * tensor: one workgroup of 64 threads per query row streams the keys in blocks of 64 with an
 * online (running max / running sum) softmax, flash-attention style, and accumulates the
 * probability-weighted values in registers (thread t owns dims 4t … 4t+3, then 4(t+64) …).
 *
 * The segments of one call are separate buffers; a dispatch binds as many as the device's
 * `maxStorageBuffersPerShaderStage` allows (two per segment). With more segments, passes carry the
 * softmax state (unnormalized accumulator, max, sum per row) to the next pass, so any number of
 * segments is exact. Causal rows stop at their last visible key (no work on masked keys); an
 * additive mask broadcastable to [B, H, Lq, Lk] is added to the scores; grouped-query heads read
 * their key/value head (h / (H / Hkv)) directly. Scores are (q · k) · scale in float32, exp in
 * float32, as the composite.
 */
import * as tf from '@tensorflow/tfjs-core';

import type { AttentionOptions, KVSegment } from '../ops/attention.js';
import { type Uniform, engineTensor, runOwned, webgpuBackend } from './program.js';

const WG = 64;

/** Segments one dispatch can bind on this device (≥ 1), given the other bindings. */
export function segmentsPerPass(maxStorageBuffers: number, hasMask: boolean, hasState: boolean): number {
  const free = maxStorageBuffers - 2 - (hasMask ? 1 : 0) - (hasState ? 1 : 0); // result + Q
  return Math.max(1, Math.floor(free / 2));
}

function maskStrides(mask: tf.Tensor): [number, number, number, number] {
  const shape = [...Array(4 - mask.rank).fill(1), ...mask.shape] as number[];
  const strides = [0, 0, 0, 0];
  let s = 1;
  for (let d = 3; d >= 0; d--) {
    strides[d] = (shape[d] as number) === 1 ? 0 : s;
    s *= shape[d] as number;
  }
  return strides as [number, number, number, number];
}

interface PassSpec {
  d: number;
  nSeg: number;
  mask: boolean;
  stateIn: boolean;
  final: boolean;
  causal: boolean;
}

function passCode(p: PassSpec): string {
  const d4 = p.d / 4;
  const per = Math.ceil(d4 / WG); // vec4 chunks of the head dim per thread
  const segs: string[] = [];
  for (let s = 0; s < p.nSeg; s++) {
    segs.push(`
  {
    let n = u32(uniforms.n${s});
    let off = u32(uniforms.o${s});
    let end = min(n, lim - min(lim, off));
    let kvBase = (b * hkv + hk) * n;
    for (var j0 = 0u; j0 < end; j0 += ${WG}u) {
      let j = j0 + localIndex;
      var sv = -3.0e38;
      let valid = j < end;
      if (valid) {
        var dv = 0.0;
        let kb = (kvBase + j) * ${d4}u;
        for (var c = 0u; c < ${d4}u; c++) { dv += dot(qsh[c], K${s}[kb + c]); }
        sv = dv * uniforms.scale;
        ${p.mask ? `sv += M[b * u32(uniforms.mb) + h * u32(uniforms.mh) + qi * u32(uniforms.mq) + (off + j) * u32(uniforms.mk)];` : ''}
      }
      sc[localIndex] = sv;
      workgroupBarrier();
      let cnt = min(${WG}u, end - j0);
      var bm = m;
      for (var t = 0u; t < cnt; t++) { bm = max(bm, sc[t]); }
      let corr = exp(m - bm);
      pp[localIndex] = select(0.0, exp(sv - bm), valid);
      workgroupBarrier();
      var ps = 0.0;
      for (var t = 0u; t < cnt; t++) { ps += pp[t]; }
      l = l * corr + ps;
      for (var e = 0u; e < ${per}u; e++) {
        let c = localIndex + e * ${WG}u;
        if (c < ${d4}u) {
          var a = acc[e] * corr;
          for (var t = 0u; t < cnt; t++) { a += pp[t] * V${s}[(kvBase + j0 + t) * ${d4}u + c]; }
          acc[e] = a;
        }
      }
      m = bm;
      workgroupBarrier();
    }
  }`);
  }
  const stride = p.d + 2;
  return `
var<workgroup> qsh: array<vec4<f32>, ${d4}>;
var<workgroup> sc: array<f32, ${WG}>;
var<workgroup> pp: array<f32, ${WG}>;
var<workgroup> wl: u32;

fn main() {
  let rows = u32(uniforms.rows);
  let row = owletWorkgroupIndex();
  let live = row < rows;
  let rr = min(row, rows - 1u);
  let lq = u32(uniforms.lq);
  let heads = u32(uniforms.heads);
  let hkv = u32(uniforms.hkv);
  let qi = rr % lq;
  let bh = rr / lq;
  let h = bh % heads;
  let b = bh / heads;
  let hk = h / (heads / hkv);
  for (var c = localIndex; c < ${d4}u; c += ${WG}u) { qsh[c] = Q[rr * ${d4}u + c]; }
  if (localIndex == 0u) {
    ${p.causal ? 'wl = u32(uniforms.lk) - lq + qi + 1u;' : 'wl = u32(uniforms.lk);'}
  }
  let lim = workgroupUniformLoad(&wl);
  var m = -3.0e38;
  var l = 0.0;
  var acc: array<vec4<f32>, ${per}>;
  ${
    p.stateIn
      ? `m = ST[rr * ${stride}u + ${p.d}u];
  l = ST[rr * ${stride}u + ${p.d + 1}u];
  for (var e = 0u; e < ${per}u; e++) {
    let c = localIndex + e * ${WG}u;
    if (c < ${d4}u) {
      acc[e] = vec4<f32>(ST[rr * ${stride}u + c * 4u], ST[rr * ${stride}u + c * 4u + 1u],
                         ST[rr * ${stride}u + c * 4u + 2u], ST[rr * ${stride}u + c * 4u + 3u]);
    }
  }`
      : ''
  }
  ${segs.join('\n')}
  if (live) {
    for (var e = 0u; e < ${per}u; e++) {
      let c = localIndex + e * ${WG}u;
      if (c < ${d4}u) {
        ${
          p.final
            ? `let o = acc[e] / l;
        for (var k = 0u; k < 4u; k++) { result[rr * ${p.d}u + c * 4u + k] = o[k]; }`
            : `for (var k = 0u; k < 4u; k++) { result[rr * ${stride}u + c * 4u + k] = acc[e][k]; }`
        }
      }
    }
    ${p.final ? '' : `if (localIndex == 0u) { result[rr * ${stride}u + ${p.d}u] = m; result[rr * ${stride}u + ${p.d + 1}u] = l; }`}
  }
}
`;
}

/**
 * q [B, H, Lq, D], segments of k/v [B, Hkv, n_i, D] → [B, H, Lq, D]. The caller has validated the
 * shapes; D must be a multiple of 4 and every tensor float32.
 */
export function runAttention(
  q: tf.Tensor,
  segments: readonly KVSegment[],
  options: AttentionOptions & { scale: number },
): tf.Tensor {
  const [b, h, lq, d] = q.shape as [number, number, number, number];
  const hkv = segments[0]?.k.shape[1] as number;
  const lk = segments.reduce((n, s) => n + (s.k.shape[2] as number), 0);
  const rows = b * h * lq;
  const mask = options.mask ?? null;
  const maxBuffers = webgpuBackend().device.limits.maxStorageBuffersPerShaderStage;
  const causal = options.causal === true;
  const offsets: number[] = [];
  let o = 0;
  for (const s of segments) {
    offsets.push(o);
    o += s.k.shape[2] as number;
  }
  return tf.tidy(() => {
    let state: tf.Tensor | null = null;
    let next = 0;
    while (next < segments.length) {
      const per = segmentsPerPass(maxBuffers, mask !== null, state !== null);
      const group = segments.slice(next, next + per);
      const final = next + group.length === segments.length;
      const inputs: tf.Tensor[] = [q];
      const names = ['Q'];
      const components = [4];
      group.forEach((s, i) => {
        inputs.push(s.k, s.v);
        names.push(`K${i}`, `V${i}`);
        components.push(4, 4);
      });
      if (mask) {
        inputs.push(mask);
        names.push('M');
        components.push(1);
      }
      if (state) {
        inputs.push(state);
        names.push('ST');
        components.push(1);
      }
      const uniforms: Uniform[] = [
        { name: 'rows', type: 'int32', value: rows },
        { name: 'lq', type: 'int32', value: lq },
        { name: 'lk', type: 'int32', value: lk },
        { name: 'heads', type: 'int32', value: h },
        { name: 'hkv', type: 'int32', value: hkv },
        { name: 'scale', type: 'float32', value: options.scale },
      ];
      group.forEach((s, i) => {
        uniforms.push({ name: `n${i}`, type: 'int32', value: s.k.shape[2] as number });
        uniforms.push({ name: `o${i}`, type: 'int32', value: offsets[next + i] as number });
      });
      if (mask) {
        const [mb, mh, mq, mk] = maskStrides(mask);
        uniforms.push(
          { name: 'mb', type: 'int32', value: mb },
          { name: 'mh', type: 'int32', value: mh },
          { name: 'mq', type: 'int32', value: mq },
          { name: 'mk', type: 'int32', value: mk },
        );
      }
      const spec: PassSpec = { d, nSeg: group.length, mask: mask !== null, stateIn: state !== null, final, causal };
      const out = engineTensor(
        runOwned({
          key: `attention:d${d}:s${group.length}:m${spec.mask ? 1 : 0}:st${spec.stateIn ? 1 : 0}:f${final ? 1 : 0}:c${causal ? 1 : 0}`,
          inputs,
          names,
          components,
          outputShape: final ? [b, h, lq, d] : [rows, d + 2],
          workgroups: rows,
          workgroupSize: WG,
          uniforms,
          code: passCode(spec),
        }),
      );
      if (final) return out;
      state = out;
      next += group.length;
    }
    throw new Error('runAttention: no segments');
  });
}
