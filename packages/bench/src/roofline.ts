/**
 * The memory-bandwidth roofline of this machine, measured the way a decode step reads weights: a
 * single-threaded streaming read over a 512 MiB Float32Array, far larger than the caches. Two reads
 * are timed: a JS loop (which on slow or shared cores is limited by the loop, not by DRAM) and a
 * native scan of the same bytes; the faster one is the roofline.
 */
export interface RooflineResult {
  bytes: number;
  passes: number;
  /** The roofline used: the larger median of the two reads below (GB/s, 1e9 bytes per second). */
  gbPerS: number;
  bestGbPerS: number;
  /** Median GB/s of a JS loop summing the Float32Array with 8 accumulators (compute-bound on slow cores). */
  jsLoopGbPerS: number;
  /** Median GB/s of a native byte scan over the same memory (`Buffer#indexOf` of an absent byte, SIMD memchr). */
  nativeScanGbPerS: number;
}

export function measureStreamingRead(bytes = 512 * 1024 * 1024, passes = 7): RooflineResult {
  const n = Math.floor(bytes / 4);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i += 1024) a[i] = i & 7; // touch every page
  const rates: number[] = [];
  let sink = 0;
  for (let p = 0; p < passes + 1; p++) {
    const t0 = performance.now();
    let s0 = 0,
      s1 = 0,
      s2 = 0,
      s3 = 0,
      s4 = 0,
      s5 = 0,
      s6 = 0,
      s7 = 0;
    for (let i = 0; i < n; i += 8) {
      s0 += a[i]!;
      s1 += a[i + 1]!;
      s2 += a[i + 2]!;
      s3 += a[i + 3]!;
      s4 += a[i + 4]!;
      s5 += a[i + 5]!;
      s6 += a[i + 6]!;
      s7 += a[i + 7]!;
    }
    const dt = (performance.now() - t0) / 1000;
    sink += s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
    if (p > 0) rates.push((n * 4) / dt / 1e9); // pass 0 warms up the JIT
  }
  if (sink === -1) rates.push(0); // keep the sums alive
  // The same memory read by native code: a byte that occurs nowhere makes indexOf scan all of it.
  const bytesView = Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  a.fill(1.5); // bytes 00 00 c0 3f: 0x11 never occurs
  const scan: number[] = [];
  for (let p = 0; p < passes + 1; p++) {
    const t0 = performance.now();
    const at = bytesView.indexOf(0x11);
    const dt = (performance.now() - t0) / 1000;
    if (at !== -1) throw new Error('roofline: unexpected byte found');
    if (p > 0) scan.push((n * 4) / dt / 1e9);
  }
  const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
  const js = med(rates);
  const nat = med(scan);
  return {
    bytes: n * 4,
    passes,
    gbPerS: Math.max(js, nat),
    bestGbPerS: Math.max(...rates, ...scan),
    jsLoopGbPerS: js,
    nativeScanGbPerS: nat,
  };
}
