// owlet CPU kernels, AssemblyScript compiled to WebAssembly SIMD128 (see ../src/cpu/README.md).
// Every function works on raw pointers into one shared memory (an "arena"); nothing allocates.
// Matrices are row-major. A weight is [out, k] in the canonical GGUF layout (see quant/packed.ts):
//   fp32: 4·k bytes per row; fp16: 2·k; q8: k/32 blocks of {f16 d, i8 q[32]} (34 B);
//   q4: k/32 blocks of {f16 d, u8 q[16]} (18 B; low nibble = value j, high nibble = value j + 16).
// Activations for q8/q4 products are quantized per 32-value block to int16 with one f32 scale:
// qd f32[n·k/32], qs i16[n·k]. y is [n, ldy]; rows r0…r1 of the
// output are computed (a thread's share); bias (f32[out]) is added when its pointer is not 0.

// ---------------------------------------------------------------------------------------------
// helpers

@inline function half(h: u32): f32 {
  // binary16 → binary32 exactly (subnormals included): move exponent+mantissa into place, scale by 2^112
  const mag = reinterpret<f32>((h & 0x7fff) << 13) * reinterpret<f32>(0x77800000);
  return reinterpret<f32>(reinterpret<u32>(mag) | ((h & 0x8000) << 16));
}

@inline function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

/** 4 binary16 values (8 bytes at p) → f32x4, exact. */
@inline function half4(p: usize): v128 {
  const h = i32x4.extend_low_i16x8_u(v128.load64_zero(p));
  const mag = f32x4.mul(i32x4.shl(v128.and(h, i32x4.splat(0x7fff)), 13), f32x4.splat(reinterpret<f32>(0x77800000)));
  return v128.or(mag, i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16));
}

// ---------------------------------------------------------------------------------------------
// activation quantization: per 32 values d = max|x| / 32767, q = round-half-even(x / d) as int16.
// (llama.cpp quantizes activations to int8; int16 keeps their error at 2^-16 of the block maximum,
// so a q8/q4 product is as accurate as the weights allow, at the same instruction count: i32x4.dot.)

export function quantize_q16(x: usize, n: i32, k: i32, qd: usize, qs: usize): void {
  const nb = k >> 5;
  for (let i = 0; i < n; i++) {
    for (let b = 0; b < nb; b++) {
      const e = <usize>i * <usize>k + (<usize>b << 5);
      const p = x + (e << 2);
      let m = f32x4.abs(v128.load(p));
      for (let j = 1; j < 8; j++) m = f32x4.max(m, f32x4.abs(v128.load(p + (<usize>j << 4))));
      const amax = max(max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)), max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)));
      const d: f32 = amax / 32767;
      const id: f32 = d != 0 ? <f32>1 / d : 0;
      store<f32>(qd + ((<usize>i * <usize>nb + <usize>b) << 2), d);
      const vid = f32x4.splat(id);
      const o = qs + (e << 1);
      for (let j = 0; j < 4; j++) {
        const q = p + (<usize>j << 5);
        const a = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(q), vid)));
        const c = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(q + 16), vid)));
        v128.store(o + (<usize>j << 4), i16x8.narrow_i32x4_s(a, c));
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// q4 weights × int16 activations

/** i32x4 partial sums of one q4 block (lo/hi: nibbles − 8, as int8) against 32 int16 activations at xp. */
@inline function dot_q4(lo: v128, hi: v128, xp: usize): v128 {
  let s = i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(lo), v128.load(xp));
  s = i32x4.add(s, i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(lo), v128.load(xp + 16)));
  s = i32x4.add(s, i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(hi), v128.load(xp + 32)));
  return i32x4.add(s, i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(hi), v128.load(xp + 48)));
}

/** y[i, r] = Σ_b d_w·d_x·Σ_j (q_w − 8)·q_x + bias[r] (|Σ| ≤ 32·8·32767: exact in int32). */
export function gemm_q4(w: usize, qd: usize, qs: usize, n: i32, k: i32, y: usize, ldy: i32, r0: i32, r1: i32, bias: usize): void {
  const nb = k >> 5;
  const rowBytes = <usize>nb * 18;
  const mask = i8x16.splat(0x0f);
  const eight = i8x16.splat(8);
  const xk = <usize>k << 1;
  const sk = <usize>nb << 2;
  for (let r = r0; r < r1; r++) {
    const wr = w + <usize>r * rowBytes;
    const bv: f32 = bias != 0 ? load<f32>(bias + (<usize>r << 2)) : 0;
    let i = 0;
    for (; i + 4 <= n; i += 4) {
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      for (let b = 0; b < nb; b++) {
        const wb = wr + <usize>b * 18;
        const dw = half(load<u16>(wb));
        const raw = v128.load(wb + 2);
        const lo = i8x16.sub(v128.and(raw, mask), eight);
        const hi = i8x16.sub(i8x16.shr_u(raw, 4), eight);
        const xo = qs + <usize>i * xk + (<usize>b << 6);
        const so = qd + ((<usize>i * <usize>nb + <usize>b) << 2);
        a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(dot_q4(lo, hi, xo)), f32x4.splat(dw * load<f32>(so))));
        a1 = f32x4.add(a1, f32x4.mul(f32x4.convert_i32x4_s(dot_q4(lo, hi, xo + xk)), f32x4.splat(dw * load<f32>(so + sk))));
        a2 = f32x4.add(a2, f32x4.mul(f32x4.convert_i32x4_s(dot_q4(lo, hi, xo + 2 * xk)), f32x4.splat(dw * load<f32>(so + 2 * sk))));
        a3 = f32x4.add(a3, f32x4.mul(f32x4.convert_i32x4_s(dot_q4(lo, hi, xo + 3 * xk)), f32x4.splat(dw * load<f32>(so + 3 * sk))));
      }
      const yo = y + ((<usize>i * <usize>ldy + <usize>r) << 2);
      const ld = <usize>ldy << 2;
      store<f32>(yo, hsum(a0) + bv);
      store<f32>(yo + ld, hsum(a1) + bv);
      store<f32>(yo + 2 * ld, hsum(a2) + bv);
      store<f32>(yo + 3 * ld, hsum(a3) + bv);
    }
    for (; i < n; i++) {
      let a0 = f32x4.splat(0);
      let a1 = f32x4.splat(0);
      let b = 0;
      const xr = qs + <usize>i * xk;
      const sr = qd + ((<usize>i * <usize>nb) << 2);
      // two blocks per step: independent accumulators
      for (; b + 2 <= nb; b += 2) {
        const wb = wr + <usize>b * 18;
        const raw0 = v128.load(wb + 2);
        const raw1 = v128.load(wb + 20);
        const s0 = dot_q4(i8x16.sub(v128.and(raw0, mask), eight), i8x16.sub(i8x16.shr_u(raw0, 4), eight), xr + (<usize>b << 6));
        const s1 = dot_q4(i8x16.sub(v128.and(raw1, mask), eight), i8x16.sub(i8x16.shr_u(raw1, 4), eight), xr + (<usize>b << 6) + 64);
        a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(s0), f32x4.splat(half(load<u16>(wb)) * load<f32>(sr + (<usize>b << 2)))));
        a1 = f32x4.add(a1, f32x4.mul(f32x4.convert_i32x4_s(s1), f32x4.splat(half(load<u16>(wb + 18)) * load<f32>(sr + (<usize>b << 2) + 4))));
      }
      for (; b < nb; b++) {
        const wb = wr + <usize>b * 18;
        const raw = v128.load(wb + 2);
        const s = dot_q4(i8x16.sub(v128.and(raw, mask), eight), i8x16.sub(i8x16.shr_u(raw, 4), eight), xr + (<usize>b << 6));
        a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(s), f32x4.splat(half(load<u16>(wb)) * load<f32>(sr + (<usize>b << 2)))));
      }
      store<f32>(y + ((<usize>i * <usize>ldy + <usize>r) << 2), hsum(f32x4.add(a0, a1)) + bv);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// q8 weights × int16 activations

@inline function dot_q8(w0: v128, w1: v128, xp: usize): v128 {
  let s = i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(w0), v128.load(xp));
  s = i32x4.add(s, i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(w0), v128.load(xp + 16)));
  s = i32x4.add(s, i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(w1), v128.load(xp + 32)));
  return i32x4.add(s, i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(w1), v128.load(xp + 48)));
}

/** y[i, r] = Σ_b d_w·d_x·Σ_j q_w·q_x + bias[r] (|Σ| ≤ 32·127·32767: exact in int32). */
export function gemm_q8(w: usize, qd: usize, qs: usize, n: i32, k: i32, y: usize, ldy: i32, r0: i32, r1: i32, bias: usize): void {
  const nb = k >> 5;
  const rowBytes = <usize>nb * 34;
  const xk = <usize>k << 1;
  const sk = <usize>nb << 2;
  for (let r = r0; r < r1; r++) {
    const wr = w + <usize>r * rowBytes;
    const bv: f32 = bias != 0 ? load<f32>(bias + (<usize>r << 2)) : 0;
    let i = 0;
    for (; i + 4 <= n; i += 4) {
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      for (let b = 0; b < nb; b++) {
        const wb = wr + <usize>b * 34;
        const dw = half(load<u16>(wb));
        const w0 = v128.load(wb + 2);
        const w1 = v128.load(wb + 18);
        const xo = qs + <usize>i * xk + (<usize>b << 6);
        const so = qd + ((<usize>i * <usize>nb + <usize>b) << 2);
        a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(dot_q8(w0, w1, xo)), f32x4.splat(dw * load<f32>(so))));
        a1 = f32x4.add(a1, f32x4.mul(f32x4.convert_i32x4_s(dot_q8(w0, w1, xo + xk)), f32x4.splat(dw * load<f32>(so + sk))));
        a2 = f32x4.add(a2, f32x4.mul(f32x4.convert_i32x4_s(dot_q8(w0, w1, xo + 2 * xk)), f32x4.splat(dw * load<f32>(so + 2 * sk))));
        a3 = f32x4.add(a3, f32x4.mul(f32x4.convert_i32x4_s(dot_q8(w0, w1, xo + 3 * xk)), f32x4.splat(dw * load<f32>(so + 3 * sk))));
      }
      const yo = y + ((<usize>i * <usize>ldy + <usize>r) << 2);
      const ld = <usize>ldy << 2;
      store<f32>(yo, hsum(a0) + bv);
      store<f32>(yo + ld, hsum(a1) + bv);
      store<f32>(yo + 2 * ld, hsum(a2) + bv);
      store<f32>(yo + 3 * ld, hsum(a3) + bv);
    }
    for (; i < n; i++) {
      let a0 = f32x4.splat(0);
      let a1 = f32x4.splat(0);
      let b = 0;
      const xr = qs + <usize>i * xk;
      const sr = qd + ((<usize>i * <usize>nb) << 2);
      for (; b + 2 <= nb; b += 2) {
        const wb = wr + <usize>b * 34;
        const x0 = xr + (<usize>b << 6);
        a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(dot_q8(v128.load(wb + 2), v128.load(wb + 18), x0)), f32x4.splat(half(load<u16>(wb)) * load<f32>(sr + (<usize>b << 2)))));
        a1 = f32x4.add(a1, f32x4.mul(f32x4.convert_i32x4_s(dot_q8(v128.load(wb + 36), v128.load(wb + 52), x0 + 64)), f32x4.splat(half(load<u16>(wb + 34)) * load<f32>(sr + (<usize>b << 2) + 4))));
      }
      for (; b < nb; b++) {
        const wb = wr + <usize>b * 34;
        a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(dot_q8(v128.load(wb + 2), v128.load(wb + 18), xr + (<usize>b << 6))), f32x4.splat(half(load<u16>(wb)) * load<f32>(sr + (<usize>b << 2)))));
      }
      store<f32>(y + ((<usize>i * <usize>ldy + <usize>r) << 2), hsum(f32x4.add(a0, a1)) + bv);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// fp32 / fp16 weights × f32 activations (x [n, k] f32)

export function gemm_f32(w: usize, x: usize, n: i32, k: i32, y: usize, ldy: i32, r0: i32, r1: i32, bias: usize): void {
  const k4 = k & ~3;
  const kb = <usize>k << 2;
  for (let r = r0; r < r1; r++) {
    const wr = w + <usize>r * kb;
    const bv: f32 = bias != 0 ? load<f32>(bias + (<usize>r << 2)) : 0;
    let i = 0;
    for (; i + 4 <= n; i += 4) {
      const xr = x + <usize>i * kb;
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      for (let j = 0; j < k4; j += 4) {
        const o = <usize>j << 2;
        const wv = v128.load(wr + o);
        a0 = f32x4.add(a0, f32x4.mul(wv, v128.load(xr + o)));
        a1 = f32x4.add(a1, f32x4.mul(wv, v128.load(xr + kb + o)));
        a2 = f32x4.add(a2, f32x4.mul(wv, v128.load(xr + 2 * kb + o)));
        a3 = f32x4.add(a3, f32x4.mul(wv, v128.load(xr + 3 * kb + o)));
      }
      let s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
      for (let j = k4; j < k; j++) {
        const wv = load<f32>(wr + (<usize>j << 2));
        s0 += wv * load<f32>(xr + (<usize>j << 2));
        s1 += wv * load<f32>(xr + kb + (<usize>j << 2));
        s2 += wv * load<f32>(xr + 2 * kb + (<usize>j << 2));
        s3 += wv * load<f32>(xr + 3 * kb + (<usize>j << 2));
      }
      const yo = y + ((<usize>i * <usize>ldy + <usize>r) << 2);
      const ld = <usize>ldy << 2;
      store<f32>(yo, s0 + bv);
      store<f32>(yo + ld, s1 + bv);
      store<f32>(yo + 2 * ld, s2 + bv);
      store<f32>(yo + 3 * ld, s3 + bv);
    }
    for (; i < n; i++) {
      const xr = x + <usize>i * kb;
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
      let j = 0;
      for (; j + 8 <= k4; j += 8) {
        const o = <usize>j << 2;
        a0 = f32x4.add(a0, f32x4.mul(v128.load(wr + o), v128.load(xr + o)));
        a1 = f32x4.add(a1, f32x4.mul(v128.load(wr + o + 16), v128.load(xr + o + 16)));
      }
      for (; j < k4; j += 4) {
        const o = <usize>j << 2;
        a0 = f32x4.add(a0, f32x4.mul(v128.load(wr + o), v128.load(xr + o)));
      }
      let s = hsum(f32x4.add(a0, a1));
      for (; j < k; j++) s += load<f32>(wr + (<usize>j << 2)) * load<f32>(xr + (<usize>j << 2));
      store<f32>(y + ((<usize>i * <usize>ldy + <usize>r) << 2), s + bv);
    }
  }
}

export function gemm_f16(w: usize, x: usize, n: i32, k: i32, y: usize, ldy: i32, r0: i32, r1: i32, bias: usize): void {
  const k4 = k & ~3;
  const kb = <usize>k << 2;
  const kw = <usize>k << 1;
  for (let r = r0; r < r1; r++) {
    const wr = w + <usize>r * kw;
    const bv: f32 = bias != 0 ? load<f32>(bias + (<usize>r << 2)) : 0;
    let i = 0;
    for (; i + 4 <= n; i += 4) {
      const xr = x + <usize>i * kb;
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      for (let j = 0; j < k4; j += 4) {
        const o = <usize>j << 2;
        const wv = half4(wr + (<usize>j << 1));
        a0 = f32x4.add(a0, f32x4.mul(wv, v128.load(xr + o)));
        a1 = f32x4.add(a1, f32x4.mul(wv, v128.load(xr + kb + o)));
        a2 = f32x4.add(a2, f32x4.mul(wv, v128.load(xr + 2 * kb + o)));
        a3 = f32x4.add(a3, f32x4.mul(wv, v128.load(xr + 3 * kb + o)));
      }
      let s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
      for (let j = k4; j < k; j++) {
        const wv = half(load<u16>(wr + (<usize>j << 1)));
        s0 += wv * load<f32>(xr + (<usize>j << 2));
        s1 += wv * load<f32>(xr + kb + (<usize>j << 2));
        s2 += wv * load<f32>(xr + 2 * kb + (<usize>j << 2));
        s3 += wv * load<f32>(xr + 3 * kb + (<usize>j << 2));
      }
      const yo = y + ((<usize>i * <usize>ldy + <usize>r) << 2);
      const ld = <usize>ldy << 2;
      store<f32>(yo, s0 + bv);
      store<f32>(yo + ld, s1 + bv);
      store<f32>(yo + 2 * ld, s2 + bv);
      store<f32>(yo + 3 * ld, s3 + bv);
    }
    for (; i < n; i++) {
      const xr = x + <usize>i * kb;
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
      let j = 0;
      for (; j + 8 <= k4; j += 8) {
        a0 = f32x4.add(a0, f32x4.mul(half4(wr + (<usize>j << 1)), v128.load(xr + (<usize>j << 2))));
        a1 = f32x4.add(a1, f32x4.mul(half4(wr + (<usize>j << 1) + 8), v128.load(xr + (<usize>j << 2) + 16)));
      }
      for (; j < k4; j += 4) a0 = f32x4.add(a0, f32x4.mul(half4(wr + (<usize>j << 1)), v128.load(xr + (<usize>j << 2))));
      let s = hsum(f32x4.add(a0, a1));
      for (; j < k; j++) s += half(load<u16>(wr + (<usize>j << 1))) * load<f32>(xr + (<usize>j << 2));
      store<f32>(y + ((<usize>i * <usize>ldy + <usize>r) << 2), s + bv);
    }
  }
}
