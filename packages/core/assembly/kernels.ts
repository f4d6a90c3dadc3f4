// owlet CPU kernels, AssemblyScript compiled to WebAssembly SIMD128 (see ../src/cpu/README.md).
// Every function works on raw pointers into one memory (an "arena"); nothing allocates. The
// layouts and numerics are those of the native add-on (../native/kernels_generic.inc): weights in
// the x16 layout (groups of 16 output rows), q8 / q4 products from exact int32 block sums, then
// float32 steps in the same order, so both engines give bit-identical q8 / q4 results.
//
// Activations for q8/q4 products: per row i and 32-value block b, qs i16[n·k] (i·k + 32b …),
// qd f32[n·nb] (scale) and sx i32[n·nb] (Σ q). y is [n, out] row-major; a call computes the row
// groups [g0, g1) for every activation row; rows ≥ out are not stored; bias (f32[out]) is added
// when its pointer is not 0.

// ---------------------------------------------------------------------------------------------
// helpers

@inline function half(h: u32): f32 {
  // binary16 → binary32 exactly for finite values: move exponent+mantissa into place, scale by 2^112
  const mag = reinterpret<f32>((h & 0x7fff) << 13) * reinterpret<f32>(0x77800000);
  return reinterpret<f32>(reinterpret<u32>(mag) | ((h & 0x8000) << 16));
}

/** 4 binary16 values (8 bytes at p) → f32x4, exact for finite values. */
@inline function half4(p: usize): v128 {
  const h = i32x4.extend_low_i16x8_u(v128.load64_zero(p));
  const mag = f32x4.mul(i32x4.shl(v128.and(h, i32x4.splat(0x7fff)), 13), f32x4.splat(reinterpret<f32>(0x77800000)));
  return v128.or(mag, i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16));
}

@inline function splat32(p: usize): v128 {
  return v128.load32_splat(p);
}

/** Stores 16 outputs (4 quads) of group g for row i (rows ≥ out skipped), adding bias when given. */
@inline function store16(y: usize, out: i32, i: i32, g: i32, a0: v128, a1: v128, a2: v128, a3: v128, bias: usize): void {
  const base = <usize>g << 4;
  const yo = y + ((<usize>i * <usize>out + base) << 2);
  if (base + 16 <= <usize>out) {
    if (bias != 0) {
      const bp = bias + (base << 2);
      a0 = f32x4.add(a0, v128.load(bp));
      a1 = f32x4.add(a1, v128.load(bp, 16));
      a2 = f32x4.add(a2, v128.load(bp, 32));
      a3 = f32x4.add(a3, v128.load(bp, 48));
    }
    v128.store(yo, a0);
    v128.store(yo, a1, 16);
    v128.store(yo, a2, 32);
    v128.store(yo, a3, 48);
    return;
  }
  // the last, partial group
  const rows = <i32>(<usize>out - base);
  for (let r = 0; r < rows; r++) {
    const q = r >> 2;
    const v = q == 0 ? a0 : q == 1 ? a1 : q == 2 ? a2 : a3;
    let s: f32 = 0;
    const l = r & 3;
    if (l == 0) s = f32x4.extract_lane(v, 0);
    else if (l == 1) s = f32x4.extract_lane(v, 1);
    else if (l == 2) s = f32x4.extract_lane(v, 2);
    else s = f32x4.extract_lane(v, 3);
    if (bias != 0) s = s + load<f32>(bias + ((base + <usize>r) << 2));
    store<f32>(yo + (<usize>r << 2), s);
  }
}

// ---------------------------------------------------------------------------------------------
// activations → int16 blocks: d = max|x| / 32767, q = round-half-even(x · (1/d)), sx = Σ q

export function quantize_act(x: usize, n: i32, k: i32, qs: usize, qd: usize, sx: usize): void {
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
      const vid = f32x4.splat(id);
      const o = qs + (e << 1);
      let s = i32x4.splat(0);
      for (let j = 0; j < 4; j++) {
        const q = p + (<usize>j << 5);
        const a = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(q), vid)));
        const c = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(q + 16), vid)));
        const nq = i16x8.narrow_i32x4_s(a, c);
        v128.store(o + (<usize>j << 4), nq);
        s = i32x4.add(s, i32x4.extadd_pairwise_i16x8_s(nq));
      }
      const t = (<usize>i * <usize>nb + <usize>b) << 2;
      store<f32>(qd + t, d);
      store<i32>(sx + t, i32x4.extract_lane(s, 0) + i32x4.extract_lane(s, 1) + i32x4.extract_lane(s, 2) + i32x4.extract_lane(s, 3));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// q4 (x16: per block 16 f16 scales, then 8 chunks of 32 bytes = the 16 rows' GGUF bytes 2t, 2t+1)

/** The float32 step of one block for one activation row: acc += float(S − 8·sx) · (d_w · d_x). */
@inline function qstep(acc: v128, s: v128, s8: v128, dw: v128, dx: v128): v128 {
  return f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(i32x4.sub(s, s8)), f32x4.mul(dw, dx)));
}

export function gemm_q4(w: usize, qs: usize, qd: usize, sx: usize, n: i32, k: i32, y: usize, out: i32, g0: i32, g1: i32, bias: usize): void {
  const nb = k >> 5;
  const gb = <usize>nb * 288;
  const mask = i8x16.splat(0x0f);
  const xk = <usize>k << 1;
  for (let g = g0; g < g1; g++) {
    const wg = w + <usize>g * gb;
    let i = 0;
    for (; i + 2 <= n; i += 2) {
      let f0 = f32x4.splat(0), f1 = f32x4.splat(0), f2 = f32x4.splat(0), f3 = f32x4.splat(0);
      let h0 = f32x4.splat(0), h1 = f32x4.splat(0), h2 = f32x4.splat(0), h3 = f32x4.splat(0);
      const xa = qs + <usize>i * xk;
      const xb = xa + xk;
      for (let b = 0; b < nb; b++) {
        const wb = wg + <usize>b * 288;
        let a0 = i32x4.splat(0), a1 = i32x4.splat(0), a2 = i32x4.splat(0), a3 = i32x4.splat(0);
        let c0 = i32x4.splat(0), c1 = i32x4.splat(0), c2 = i32x4.splat(0), c3 = i32x4.splat(0);
        const pa = xa + (<usize>b << 6);
        const pb = xb + (<usize>b << 6);
        for (let t = 0; t < 8; t++) {
          const ch = wb + 32 + (<usize>t << 5);
          const xlo = splat32(pa + (<usize>t << 2));
          const xhi = splat32(pa + 32 + (<usize>t << 2));
          const ylo = splat32(pb + (<usize>t << 2));
          const yhi = splat32(pb + 32 + (<usize>t << 2));
          // rows 0-7
          let raw = v128.load(ch);
          let lo = v128.and(raw, mask);
          let hi = i8x16.shr_u(raw, 4);
          let l0 = i16x8.extend_low_i8x16_u(lo), l1 = i16x8.extend_high_i8x16_u(lo);
          let u0 = i16x8.extend_low_i8x16_u(hi), u1 = i16x8.extend_high_i8x16_u(hi);
          a0 = i32x4.add(a0, i32x4.add(i32x4.dot_i16x8_s(l0, xlo), i32x4.dot_i16x8_s(u0, xhi)));
          a1 = i32x4.add(a1, i32x4.add(i32x4.dot_i16x8_s(l1, xlo), i32x4.dot_i16x8_s(u1, xhi)));
          c0 = i32x4.add(c0, i32x4.add(i32x4.dot_i16x8_s(l0, ylo), i32x4.dot_i16x8_s(u0, yhi)));
          c1 = i32x4.add(c1, i32x4.add(i32x4.dot_i16x8_s(l1, ylo), i32x4.dot_i16x8_s(u1, yhi)));
          // rows 8-15
          raw = v128.load(ch, 16);
          lo = v128.and(raw, mask);
          hi = i8x16.shr_u(raw, 4);
          l0 = i16x8.extend_low_i8x16_u(lo);
          l1 = i16x8.extend_high_i8x16_u(lo);
          u0 = i16x8.extend_low_i8x16_u(hi);
          u1 = i16x8.extend_high_i8x16_u(hi);
          a2 = i32x4.add(a2, i32x4.add(i32x4.dot_i16x8_s(l0, xlo), i32x4.dot_i16x8_s(u0, xhi)));
          a3 = i32x4.add(a3, i32x4.add(i32x4.dot_i16x8_s(l1, xlo), i32x4.dot_i16x8_s(u1, xhi)));
          c2 = i32x4.add(c2, i32x4.add(i32x4.dot_i16x8_s(l0, ylo), i32x4.dot_i16x8_s(u0, yhi)));
          c3 = i32x4.add(c3, i32x4.add(i32x4.dot_i16x8_s(l1, ylo), i32x4.dot_i16x8_s(u1, yhi)));
        }
        const d0 = half4(wb), d1 = half4(wb + 8), d2 = half4(wb + 16), d3 = half4(wb + 24);
        const oa = (<usize>i * <usize>nb + <usize>b) << 2;
        const ob = oa + (<usize>nb << 2);
        const s8a = i32x4.splat(8 * load<i32>(sx + oa)), dxa = f32x4.splat(load<f32>(qd + oa));
        const s8b = i32x4.splat(8 * load<i32>(sx + ob)), dxb = f32x4.splat(load<f32>(qd + ob));
        f0 = qstep(f0, a0, s8a, d0, dxa);
        f1 = qstep(f1, a1, s8a, d1, dxa);
        f2 = qstep(f2, a2, s8a, d2, dxa);
        f3 = qstep(f3, a3, s8a, d3, dxa);
        h0 = qstep(h0, c0, s8b, d0, dxb);
        h1 = qstep(h1, c1, s8b, d1, dxb);
        h2 = qstep(h2, c2, s8b, d2, dxb);
        h3 = qstep(h3, c3, s8b, d3, dxb);
      }
      store16(y, out, i, g, f0, f1, f2, f3, bias);
      store16(y, out, i + 1, g, h0, h1, h2, h3, bias);
    }
    for (; i < n; i++) {
      let f0 = f32x4.splat(0), f1 = f32x4.splat(0), f2 = f32x4.splat(0), f3 = f32x4.splat(0);
      const xa = qs + <usize>i * xk;
      for (let b = 0; b < nb; b++) {
        const wb = wg + <usize>b * 288;
        let a0 = i32x4.splat(0), a1 = i32x4.splat(0), a2 = i32x4.splat(0), a3 = i32x4.splat(0);
        const pa = xa + (<usize>b << 6);
        for (let t = 0; t < 8; t++) {
          const ch = wb + 32 + (<usize>t << 5);
          const xlo = splat32(pa + (<usize>t << 2));
          const xhi = splat32(pa + 32 + (<usize>t << 2));
          let raw = v128.load(ch);
          let lo = v128.and(raw, mask);
          let hi = i8x16.shr_u(raw, 4);
          a0 = i32x4.add(a0, i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(lo), xlo), i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(hi), xhi)));
          a1 = i32x4.add(a1, i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(lo), xlo), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(hi), xhi)));
          raw = v128.load(ch, 16);
          lo = v128.and(raw, mask);
          hi = i8x16.shr_u(raw, 4);
          a2 = i32x4.add(a2, i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(lo), xlo), i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(hi), xhi)));
          a3 = i32x4.add(a3, i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(lo), xlo), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(hi), xhi)));
        }
        const oa = (<usize>i * <usize>nb + <usize>b) << 2;
        const s8a = i32x4.splat(8 * load<i32>(sx + oa)), dxa = f32x4.splat(load<f32>(qd + oa));
        f0 = qstep(f0, a0, s8a, half4(wb), dxa);
        f1 = qstep(f1, a1, s8a, half4(wb + 8), dxa);
        f2 = qstep(f2, a2, s8a, half4(wb + 16), dxa);
        f3 = qstep(f3, a3, s8a, half4(wb + 24), dxa);
      }
      store16(y, out, i, g, f0, f1, f2, f3, bias);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// q8 (x16: per block 16 f16 scales, then 16 pairs × 32 bytes = the 16 rows' int8 values 2m, 2m+1)

@inline function q8step(acc: v128, s: v128, dw: v128, dx: v128): v128 {
  return f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(s), f32x4.mul(dw, dx)));
}

export function gemm_q8(w: usize, qs: usize, qd: usize, n: i32, k: i32, y: usize, out: i32, g0: i32, g1: i32, bias: usize): void {
  const nb = k >> 5;
  const gb = <usize>nb * 544;
  const xk = <usize>k << 1;
  for (let g = g0; g < g1; g++) {
    const wg = w + <usize>g * gb;
    let i = 0;
    for (; i + 2 <= n; i += 2) {
      let f0 = f32x4.splat(0), f1 = f32x4.splat(0), f2 = f32x4.splat(0), f3 = f32x4.splat(0);
      let h0 = f32x4.splat(0), h1 = f32x4.splat(0), h2 = f32x4.splat(0), h3 = f32x4.splat(0);
      const xa = qs + <usize>i * xk;
      const xb = xa + xk;
      for (let b = 0; b < nb; b++) {
        const wb = wg + <usize>b * 544;
        let a0 = i32x4.splat(0), a1 = i32x4.splat(0), a2 = i32x4.splat(0), a3 = i32x4.splat(0);
        let c0 = i32x4.splat(0), c1 = i32x4.splat(0), c2 = i32x4.splat(0), c3 = i32x4.splat(0);
        const pa = xa + (<usize>b << 6);
        const pb = xb + (<usize>b << 6);
        for (let m = 0; m < 16; m++) {
          const p = wb + 32 + (<usize>m << 5);
          const xv = splat32(pa + (<usize>m << 2));
          const yv = splat32(pb + (<usize>m << 2));
          let raw = v128.load(p);
          let e0 = i16x8.extend_low_i8x16_s(raw), e1 = i16x8.extend_high_i8x16_s(raw);
          a0 = i32x4.add(a0, i32x4.dot_i16x8_s(e0, xv));
          a1 = i32x4.add(a1, i32x4.dot_i16x8_s(e1, xv));
          c0 = i32x4.add(c0, i32x4.dot_i16x8_s(e0, yv));
          c1 = i32x4.add(c1, i32x4.dot_i16x8_s(e1, yv));
          raw = v128.load(p, 16);
          e0 = i16x8.extend_low_i8x16_s(raw);
          e1 = i16x8.extend_high_i8x16_s(raw);
          a2 = i32x4.add(a2, i32x4.dot_i16x8_s(e0, xv));
          a3 = i32x4.add(a3, i32x4.dot_i16x8_s(e1, xv));
          c2 = i32x4.add(c2, i32x4.dot_i16x8_s(e0, yv));
          c3 = i32x4.add(c3, i32x4.dot_i16x8_s(e1, yv));
        }
        const d0 = half4(wb), d1 = half4(wb + 8), d2 = half4(wb + 16), d3 = half4(wb + 24);
        const oa = (<usize>i * <usize>nb + <usize>b) << 2;
        const dxa = f32x4.splat(load<f32>(qd + oa));
        const dxb = f32x4.splat(load<f32>(qd + oa + (<usize>nb << 2)));
        f0 = q8step(f0, a0, d0, dxa);
        f1 = q8step(f1, a1, d1, dxa);
        f2 = q8step(f2, a2, d2, dxa);
        f3 = q8step(f3, a3, d3, dxa);
        h0 = q8step(h0, c0, d0, dxb);
        h1 = q8step(h1, c1, d1, dxb);
        h2 = q8step(h2, c2, d2, dxb);
        h3 = q8step(h3, c3, d3, dxb);
      }
      store16(y, out, i, g, f0, f1, f2, f3, bias);
      store16(y, out, i + 1, g, h0, h1, h2, h3, bias);
    }
    for (; i < n; i++) {
      let f0 = f32x4.splat(0), f1 = f32x4.splat(0), f2 = f32x4.splat(0), f3 = f32x4.splat(0);
      const xa = qs + <usize>i * xk;
      for (let b = 0; b < nb; b++) {
        const wb = wg + <usize>b * 544;
        let a0 = i32x4.splat(0), a1 = i32x4.splat(0), a2 = i32x4.splat(0), a3 = i32x4.splat(0);
        const pa = xa + (<usize>b << 6);
        for (let m = 0; m < 16; m++) {
          const p = wb + 32 + (<usize>m << 5);
          const xv = splat32(pa + (<usize>m << 2));
          let raw = v128.load(p);
          a0 = i32x4.add(a0, i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(raw), xv));
          a1 = i32x4.add(a1, i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(raw), xv));
          raw = v128.load(p, 16);
          a2 = i32x4.add(a2, i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(raw), xv));
          a3 = i32x4.add(a3, i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(raw), xv));
        }
        const dxa = f32x4.splat(load<f32>(qd + ((<usize>i * <usize>nb + <usize>b) << 2)));
        f0 = q8step(f0, a0, half4(wb), dxa);
        f1 = q8step(f1, a1, half4(wb + 8), dxa);
        f2 = q8step(f2, a2, half4(wb + 16), dxa);
        f3 = q8step(f3, a3, half4(wb + 24), dxa);
      }
      store16(y, out, i, g, f0, f1, f2, f3, bias);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// fp32 / fp16 panels ([k][16 rows]): acc = acc + w · x along k, one chain per output

export function gemm_f32(w: usize, x: usize, n: i32, k: i32, y: usize, out: i32, g0: i32, g1: i32, bias: usize): void {
  const gb = <usize>k << 6;
  const xk = <usize>k << 2;
  for (let g = g0; g < g1; g++) {
    const wg = w + <usize>g * gb;
    let i = 0;
    for (; i + 2 <= n; i += 2) {
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      let c0 = f32x4.splat(0), c1 = f32x4.splat(0), c2 = f32x4.splat(0), c3 = f32x4.splat(0);
      const xa = x + <usize>i * xk;
      for (let j = 0; j < k; j++) {
        const p = wg + (<usize>j << 6);
        const w0 = v128.load(p), w1 = v128.load(p, 16), w2 = v128.load(p, 32), w3 = v128.load(p, 48);
        const xv = splat32(xa + (<usize>j << 2));
        const yv = splat32(xa + xk + (<usize>j << 2));
        a0 = f32x4.add(a0, f32x4.mul(w0, xv));
        a1 = f32x4.add(a1, f32x4.mul(w1, xv));
        a2 = f32x4.add(a2, f32x4.mul(w2, xv));
        a3 = f32x4.add(a3, f32x4.mul(w3, xv));
        c0 = f32x4.add(c0, f32x4.mul(w0, yv));
        c1 = f32x4.add(c1, f32x4.mul(w1, yv));
        c2 = f32x4.add(c2, f32x4.mul(w2, yv));
        c3 = f32x4.add(c3, f32x4.mul(w3, yv));
      }
      store16(y, out, i, g, a0, a1, a2, a3, bias);
      store16(y, out, i + 1, g, c0, c1, c2, c3, bias);
    }
    for (; i < n; i++) {
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      const xa = x + <usize>i * xk;
      for (let j = 0; j < k; j++) {
        const p = wg + (<usize>j << 6);
        const xv = splat32(xa + (<usize>j << 2));
        a0 = f32x4.add(a0, f32x4.mul(v128.load(p), xv));
        a1 = f32x4.add(a1, f32x4.mul(v128.load(p, 16), xv));
        a2 = f32x4.add(a2, f32x4.mul(v128.load(p, 32), xv));
        a3 = f32x4.add(a3, f32x4.mul(v128.load(p, 48), xv));
      }
      store16(y, out, i, g, a0, a1, a2, a3, bias);
    }
  }
}

export function gemm_f16(w: usize, x: usize, n: i32, k: i32, y: usize, out: i32, g0: i32, g1: i32, bias: usize): void {
  const gb = <usize>k << 5;
  const xk = <usize>k << 2;
  for (let g = g0; g < g1; g++) {
    const wg = w + <usize>g * gb;
    let i = 0;
    for (; i + 2 <= n; i += 2) {
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      let c0 = f32x4.splat(0), c1 = f32x4.splat(0), c2 = f32x4.splat(0), c3 = f32x4.splat(0);
      const xa = x + <usize>i * xk;
      for (let j = 0; j < k; j++) {
        const p = wg + (<usize>j << 5);
        const w0 = half4(p), w1 = half4(p + 8), w2 = half4(p + 16), w3 = half4(p + 24);
        const xv = splat32(xa + (<usize>j << 2));
        const yv = splat32(xa + xk + (<usize>j << 2));
        a0 = f32x4.add(a0, f32x4.mul(w0, xv));
        a1 = f32x4.add(a1, f32x4.mul(w1, xv));
        a2 = f32x4.add(a2, f32x4.mul(w2, xv));
        a3 = f32x4.add(a3, f32x4.mul(w3, xv));
        c0 = f32x4.add(c0, f32x4.mul(w0, yv));
        c1 = f32x4.add(c1, f32x4.mul(w1, yv));
        c2 = f32x4.add(c2, f32x4.mul(w2, yv));
        c3 = f32x4.add(c3, f32x4.mul(w3, yv));
      }
      store16(y, out, i, g, a0, a1, a2, a3, bias);
      store16(y, out, i + 1, g, c0, c1, c2, c3, bias);
    }
    for (; i < n; i++) {
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      const xa = x + <usize>i * xk;
      for (let j = 0; j < k; j++) {
        const p = wg + (<usize>j << 5);
        const xv = splat32(xa + (<usize>j << 2));
        a0 = f32x4.add(a0, f32x4.mul(half4(p), xv));
        a1 = f32x4.add(a1, f32x4.mul(half4(p + 8), xv));
        a2 = f32x4.add(a2, f32x4.mul(half4(p + 16), xv));
        a3 = f32x4.add(a3, f32x4.mul(half4(p + 24), xv));
      }
      store16(y, out, i, g, a0, a1, a2, a3, bias);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// float helpers (the native add-on's exp_f32 / erf_f32, same operations)

@inline function roundEven(v: v128): v128 {
  return f32x4.nearest(v);
}

/** e^x, ≈ 1 ulp: the native exp_f32 step for step. */
@inline function exp4(x: v128): v128 {
  x = f32x4.min(f32x4.max(x, f32x4.splat(-87.3)), f32x4.splat(88.3));
  const n = roundEven(f32x4.mul(x, f32x4.splat(1.44269504088896341)));
  let r = f32x4.sub(x, f32x4.mul(n, f32x4.splat(0.693145751953125)));
  r = f32x4.sub(r, f32x4.mul(n, f32x4.splat(1.428606765330187e-6)));
  let p = f32x4.splat(1.9841270e-4);
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.3888889e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(8.3333333e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(4.1666667e-2));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.6666667e-1));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(0.5));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.0));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.0));
  const e = i32x4.add(i32x4.trunc_sat_f32x4_s(n), i32x4.splat(127));
  return f32x4.mul(p, i32x4.shl(e, 23));
}

@inline function sigmoid4(x: v128): v128 {
  const one = f32x4.splat(1);
  return f32x4.div(one, f32x4.add(one, exp4(f32x4.neg(x))));
}

@inline function erf4(x: v128): v128 {
  const a = f32x4.abs(x);
  const t = f32x4.div(f32x4.splat(1), f32x4.add(f32x4.splat(1), f32x4.mul(f32x4.splat(0.3275911), a)));
  let p = f32x4.splat(1.061405429);
  p = f32x4.sub(f32x4.mul(p, t), f32x4.splat(1.453152027));
  p = f32x4.add(f32x4.mul(p, t), f32x4.splat(1.421413741));
  p = f32x4.sub(f32x4.mul(p, t), f32x4.splat(0.284496736));
  p = f32x4.add(f32x4.mul(p, t), f32x4.splat(0.254829592));
  const y = f32x4.sub(f32x4.splat(1), f32x4.mul(f32x4.mul(p, t), exp4(f32x4.neg(f32x4.mul(a, a)))));
  // sign of x onto y
  return v128.or(v128.and(x, i32x4.splat(0x80000000)), y);
}

/** Applies f to [i0, i1) of x (and u), 4 at a time; the tail through a zero-padded vector. */
@inline function loadTail(p: usize, n: i32): v128 {
  let v = f32x4.splat(0);
  if (n > 0) v = f32x4.replace_lane(v, 0, load<f32>(p));
  if (n > 1) v = f32x4.replace_lane(v, 1, load<f32>(p, 4));
  if (n > 2) v = f32x4.replace_lane(v, 2, load<f32>(p, 8));
  return v;
}

@inline function storeTail(p: usize, v: v128, n: i32): void {
  if (n > 0) store<f32>(p, f32x4.extract_lane(v, 0));
  if (n > 1) store<f32>(p, f32x4.extract_lane(v, 1), 4);
  if (n > 2) store<f32>(p, f32x4.extract_lane(v, 2), 8);
}

export function swiglu(g: usize, u: usize, y: usize, i0: i32, i1: i32): void {
  let i = i0;
  for (; i + 4 <= i1; i += 4) {
    const o = <usize>i << 2;
    const gv = v128.load(g + o);
    v128.store(y + o, f32x4.mul(f32x4.mul(gv, sigmoid4(gv)), v128.load(u + o)));
  }
  if (i < i1) {
    const o = <usize>i << 2;
    const gv = loadTail(g + o, i1 - i);
    storeTail(y + o, f32x4.mul(f32x4.mul(gv, sigmoid4(gv)), loadTail(u + o, i1 - i)), i1 - i);
  }
}

export function gelu(x: usize, y: usize, i0: i32, i1: i32): void {
  const h = f32x4.splat(0.5), c = f32x4.splat(0.70710678118654752), one = f32x4.splat(1);
  let i = i0;
  for (; i + 4 <= i1; i += 4) {
    const o = <usize>i << 2;
    const v = v128.load(x + o);
    v128.store(y + o, f32x4.mul(f32x4.mul(v, h), f32x4.add(erf4(f32x4.mul(v, c)), one)));
  }
  if (i < i1) {
    const o = <usize>i << 2;
    const v = loadTail(x + o, i1 - i);
    storeTail(y + o, f32x4.mul(f32x4.mul(v, h), f32x4.add(erf4(f32x4.mul(v, c)), one)), i1 - i);
  }
}

export function quick_gelu(x: usize, y: usize, i0: i32, i1: i32): void {
  const c = f32x4.splat(1.702);
  let i = i0;
  for (; i + 4 <= i1; i += 4) {
    const o = <usize>i << 2;
    const v = v128.load(x + o);
    v128.store(y + o, f32x4.mul(v, sigmoid4(f32x4.mul(v, c))));
  }
  if (i < i1) {
    const o = <usize>i << 2;
    const v = loadTail(x + o, i1 - i);
    storeTail(y + o, f32x4.mul(v, sigmoid4(f32x4.mul(v, c))), i1 - i);
  }
}

// ---------------------------------------------------------------------------------------------
// norms (sums in float64, as the native add-on)

function sumSq(p: usize, d: i32): f64 {
  let s0: f64 = 0, s1: f64 = 0;
  let j = 0;
  for (; j + 2 <= d; j += 2) {
    const a = <f64>load<f32>(p + (<usize>j << 2));
    const b = <f64>load<f32>(p + (<usize>j << 2), 4);
    s0 += a * a;
    s1 += b * b;
  }
  let s = s0 + s1;
  if (j < d) {
    const a = <f64>load<f32>(p + (<usize>j << 2));
    s += a * a;
  }
  return s;
}

export function rms_norm(x: usize, w: usize, y: usize, r0: i32, r1: i32, d: i32, eps: f32): void {
  for (let r = r0; r < r1; r++) {
    const xr = x + ((<usize>r * <usize>d) << 2);
    const yr = y + ((<usize>r * <usize>d) << 2);
    const ms = <f32>(sumSq(xr, d) / <f64>d);
    const inv: f32 = <f32>1 / Mathf.sqrt(ms + eps);
    const vi = f32x4.splat(inv);
    let j = 0;
    for (; j + 4 <= d; j += 4) {
      const o = <usize>j << 2;
      const v = f32x4.mul(v128.load(xr + o), vi);
      v128.store(yr + o, w != 0 ? f32x4.mul(v128.load(w + o), v) : v);
    }
    for (; j < d; j++) {
      const o = <usize>j << 2;
      const v = load<f32>(xr + o) * inv;
      store<f32>(yr + o, w != 0 ? load<f32>(w + o) * v : v);
    }
  }
}

export function layer_norm(x: usize, w: usize, b: usize, y: usize, r0: i32, r1: i32, d: i32, eps: f32): void {
  for (let r = r0; r < r1; r++) {
    const xr = x + ((<usize>r * <usize>d) << 2);
    const yr = y + ((<usize>r * <usize>d) << 2);
    let s: f64 = 0;
    for (let j = 0; j < d; j++) s += <f64>load<f32>(xr + (<usize>j << 2));
    const mean = s / <f64>d;
    let v: f64 = 0;
    for (let j = 0; j < d; j++) {
      const c = <f64>load<f32>(xr + (<usize>j << 2)) - mean;
      v += c * c;
    }
    const mf = <f32>mean;
    const inv: f32 = <f32>1 / Mathf.sqrt(<f32>(v / <f64>d) + eps);
    const vm = f32x4.splat(mf), vi = f32x4.splat(inv);
    let j = 0;
    for (; j + 4 <= d; j += 4) {
      const o = <usize>j << 2;
      let t = f32x4.mul(f32x4.sub(v128.load(xr + o), vm), vi);
      if (w != 0) t = f32x4.mul(t, v128.load(w + o));
      if (b != 0) t = f32x4.add(t, v128.load(b + o));
      v128.store(yr + o, t);
    }
    for (; j < d; j++) {
      const o = <usize>j << 2;
      let t = (load<f32>(xr + o) - mf) * inv;
      if (w != 0) t = t * load<f32>(w + o);
      if (b != 0) t = t + load<f32>(b + o);
      store<f32>(yr + o, t);
    }
  }
}

/** Rows [r0, r1) of x viewed as [B·H·L, D]; cos/sin [Bc, L, D]. y = x·cos + rotate_half(x)·sin. */
export function rope(x: usize, cs: usize, sn: usize, y: usize, r0: i32, r1: i32, h: i32, l: i32, d: i32, bc: i32): void {
  const half = d >> 1;
  for (let r = r0; r < r1; r++) {
    const li = r % l;
    const bi = r / (h * l);
    const t = ((<usize>(bc == 1 ? 0 : bi) * <usize>l + <usize>li) * <usize>d) << 2;
    const xr = x + ((<usize>r * <usize>d) << 2);
    const yr = y + ((<usize>r * <usize>d) << 2);
    let j = 0;
    for (; j + 4 <= half; j += 4) {
      const o = <usize>j << 2;
      const ho = <usize>half << 2;
      const x1 = v128.load(xr + o), x2 = v128.load(xr + o + ho);
      v128.store(yr + o, f32x4.add(f32x4.mul(x1, v128.load(cs + t + o)), f32x4.mul(f32x4.neg(x2), v128.load(sn + t + o))));
      v128.store(yr + o + ho, f32x4.add(f32x4.mul(x2, v128.load(cs + t + o + ho)), f32x4.mul(x1, v128.load(sn + t + o + ho))));
    }
    for (; j < half; j++) {
      const o = <usize>j << 2;
      const ho = <usize>half << 2;
      const x1 = load<f32>(xr + o), x2 = load<f32>(xr + o + ho);
      store<f32>(yr + o, x1 * load<f32>(cs + t + o) + -x2 * load<f32>(sn + t + o));
      store<f32>(yr + o + ho, x2 * load<f32>(cs + t + o + ho) + x1 * load<f32>(sn + t + o + ho));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// attention over K/V segments: online softmax, one (b, h) per call (the native attention_gen).
// args (i32 words at a): q, out, B, H, Hkv, Lq, D, nseg, kptrs, vptrs, lens, Lk, causal, scale
// (f32 bits), mask, ms0, ms1, ms2. Scratch: D·64 + 64 + Lq·(D + 2) floats.

@inline function hsum4(v: v128): f32 {
  return (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

function dot(a: usize, b: usize, n: i32): f32 {
  let p0 = f32x4.splat(0), p1 = f32x4.splat(0);
  let j = 0;
  for (; j + 8 <= n; j += 8) {
    const o = <usize>j << 2;
    p0 = f32x4.add(p0, f32x4.mul(v128.load(a + o), v128.load(b + o)));
    p1 = f32x4.add(p1, f32x4.mul(v128.load(a + o, 16), v128.load(b + o, 16)));
  }
  let s = hsum4(f32x4.add(p0, p1));
  for (; j < n; j++) s = s + load<f32>(a + (<usize>j << 2)) * load<f32>(b + (<usize>j << 2));
  return s;
}

export function attention(a: usize, bh: i32, scratch: usize): void {
  const KB = 64;
  const q0 = <usize>load<u32>(a), outp = <usize>load<u32>(a, 4);
  const H = load<i32>(a, 12), Hkv = load<i32>(a, 16), Lq = load<i32>(a, 20), D = load<i32>(a, 24);
  const nseg = load<i32>(a, 28);
  const kptrs = <usize>load<u32>(a, 32), vptrs = <usize>load<u32>(a, 36), lens = <usize>load<u32>(a, 40);
  const Lk = load<i32>(a, 44), causal = load<i32>(a, 48);
  const scale = load<f32>(a, 52);
  const mask = <usize>load<u32>(a, 56);
  const ms0 = load<i32>(a, 60), ms1 = load<i32>(a, 64), ms2 = load<i32>(a, 68);
  const b = bh / H, h = bh % H;
  const hk = h / (H / Hkv);
  const past = Lk - Lq;
  const q = q0 + ((<usize>bh * <usize>Lq * <usize>D) << 2);
  const kt = scratch; // [D, KB]
  const sc = kt + ((<usize>D * KB) << 2); // [KB]
  const acc = sc + (KB << 2); // [Lq, D]
  const mx = acc + ((<usize>Lq * <usize>D) << 2); // [Lq]
  const sum = mx + (<usize>Lq << 2); // [Lq]
  for (let i = 0; i < Lq; i++) {
    store<f32>(mx + (<usize>i << 2), -Infinity);
    store<f32>(sum + (<usize>i << 2), 0);
  }
  memory.fill(acc, 0, (<usize>Lq * <usize>D) << 2);
  const transposed = Lq >= 4;
  const vs = f32x4.splat(scale);
  let j0 = 0;
  for (let s = 0; s < nseg; s++) {
    const len = load<i32>(lens + (<usize>s << 2));
    const off = (((<usize>b * <usize>Hkv + <usize>hk) * <usize>len) * <usize>D) << 2;
    const K = <usize>load<u32>(kptrs + (<usize>s << 2)) + off;
    const V = <usize>load<u32>(vptrs + (<usize>s << 2)) + off;
    for (let kb = 0; kb < len; kb += KB) {
      const nk = min(KB, len - kb);
      const abs0 = j0 + kb;
      if (causal != 0 && abs0 > past + Lq - 1) break;
      if (transposed) {
        for (let j = 0; j < nk; j++) {
          const kr = K + ((<usize>(kb + j) * <usize>D) << 2);
          for (let d = 0; d < D; d++) store<f32>(kt + ((<usize>d * KB + <usize>j) << 2), load<f32>(kr + (<usize>d << 2)));
        }
      }
      for (let i = 0; i < Lq; i++) {
        let lim = nk;
        if (causal != 0) lim = min(lim, past + i - abs0 + 1);
        if (lim <= 0) continue;
        const qi = q + ((<usize>i * <usize>D) << 2);
        if (transposed) {
          const l4 = (lim + 3) & ~3;
          for (let j = 0; j < l4; j += 4) v128.store(sc + (<usize>j << 2), f32x4.splat(0));
          for (let d = 0; d < D; d++) {
            const qv = f32x4.splat(load<f32>(qi + (<usize>d << 2)));
            const kr = kt + ((<usize>d * KB) << 2);
            for (let j = 0; j < l4; j += 4) {
              const o = <usize>j << 2;
              v128.store(sc + o, f32x4.add(v128.load(sc + o), f32x4.mul(qv, v128.load(kr + o))));
            }
          }
          for (let j = 0; j < l4; j += 4) v128.store(sc + (<usize>j << 2), f32x4.mul(v128.load(sc + (<usize>j << 2)), vs));
        } else {
          for (let j = 0; j < lim; j++) store<f32>(sc + (<usize>j << 2), dot(qi, K + ((<usize>(kb + j) * <usize>D) << 2), D) * scale);
        }
        if (mask != 0) {
          const mr = mask + ((<usize>(b * ms0 + h * ms1 + i * ms2 + abs0)) << 2);
          for (let j = 0; j < lim; j++) store<f32>(sc + (<usize>j << 2), load<f32>(sc + (<usize>j << 2)) + load<f32>(mr + (<usize>j << 2)));
        }
        const mo = mx + (<usize>i << 2);
        const mPrev = load<f32>(mo);
        let m = mPrev;
        for (let j = 0; j < lim; j++) {
          const v = load<f32>(sc + (<usize>j << 2));
          m = v > m ? v : m;
        }
        const ai = acc + ((<usize>i * <usize>D) << 2);
        const so = sum + (<usize>i << 2);
        if (m > mPrev) {
          const corr: f32 = mPrev == -Infinity ? 0 : f32x4.extract_lane(exp4(f32x4.splat(mPrev - m)), 0);
          store<f32>(so, load<f32>(so) * corr);
          const vc = f32x4.splat(corr);
          let d = 0;
          for (; d + 4 <= D; d += 4) v128.store(ai + (<usize>d << 2), f32x4.mul(v128.load(ai + (<usize>d << 2)), vc));
          for (; d < D; d++) store<f32>(ai + (<usize>d << 2), load<f32>(ai + (<usize>d << 2)) * corr);
          store<f32>(mo, m);
        }
        const vm = f32x4.splat(m);
        const l4 = (lim + 3) & ~3;
        for (let j = 0; j < l4; j += 4) {
          const o = <usize>j << 2;
          v128.store(sc + o, exp4(f32x4.sub(v128.load(sc + o), vm)));
        }
        let l = load<f32>(so);
        for (let j = 0; j < lim; j++) {
          const p = load<f32>(sc + (<usize>j << 2));
          l = l + p;
          const vr = V + ((<usize>(kb + j) * <usize>D) << 2);
          const vp = f32x4.splat(p);
          let d = 0;
          for (; d + 4 <= D; d += 4) {
            const o = <usize>d << 2;
            v128.store(ai + o, f32x4.add(v128.load(ai + o), f32x4.mul(vp, v128.load(vr + o))));
          }
          for (; d < D; d++) store<f32>(ai + (<usize>d << 2), load<f32>(ai + (<usize>d << 2)) + p * load<f32>(vr + (<usize>d << 2)));
        }
        store<f32>(so, l);
      }
    }
    j0 += len;
  }
  const o = outp + ((<usize>bh * <usize>Lq * <usize>D) << 2);
  for (let i = 0; i < Lq; i++) {
    const l = load<f32>(sum + (<usize>i << 2));
    const inv: f32 = l > 0 ? <f32>1 / l : 0;
    for (let d = 0; d < D; d++) {
      const t = (<usize>i * <usize>D + <usize>d) << 2;
      store<f32>(o + t, load<f32>(acc + t) * inv);
    }
  }
}
