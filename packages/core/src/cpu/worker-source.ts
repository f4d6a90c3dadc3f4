/**
 * The source of a CPU engine worker thread (Node worker_threads with `eval: true`, or a browser
 * Web Worker from a Blob URL). It instantiates the kernel module on every arena memory it is sent,
 * then loops: wait for the job counter to move (a short spin, then Atomics.wait), take tasks from
 * the shared claim counter (each claim names the job it belongs to, so a thread that wakes late
 * never runs a task of a newer job with an older job's arguments) and count each task done.
 * `YIELD` returns to the event loop (to receive a new arena); `EXIT` stops. Slots, op codes and
 * the task decomposition match engine.ts (CTRL, OP, runTask).
 */
export const WORKER_SOURCE = `
'use strict';
const isNode = typeof process !== 'undefined' && process.versions && process.versions.node;
let port;
if (isNode) { port = require('node:worker_threads').parentPort; } else { port = self; }
const SEQ = 0, LIMIT = 1, CLAIM = 2, DONE = 3, ACK = 4, OPS = 5, ARENA = 6, ARGS = 8;
let ctrl = null, ctrlF = null, index = 0, module = null;
const kernels = [];
const f32 = new Float32Array(1), i32 = new Int32Array(f32.buffer);
function bitsToF32(b) { i32[0] = b; return f32[0]; }
function task(k, op, a, t, thread) {
  switch (op) {
    case 10: case 11: case 12: case 13: {
      const q = op === 10 || op === 11, o = q ? (op === 10 ? 4 : 3) : 2;
      const n = a[o], kk = a[o + 1], y = a[o + 2], out = a[o + 3], bias = a[o + 4];
      const ichunk = a[o + 5], gchunk = a[o + 6], ntg = a[o + 7];
      const ti = Math.floor(t / ntg), tg = t % ntg, groups = Math.ceil(out / 16);
      const i0 = ti * ichunk, i1 = Math.min(n, i0 + ichunk), g0 = tg * gchunk, g1 = Math.min(groups, g0 + gchunk);
      if (i1 <= i0 || g1 <= g0) return;
      const yo = y + i0 * out * 4, nb = kk / 32;
      if (op === 10) k.gemm_q4(a[0], a[1] + i0 * kk * 2, a[2] + i0 * nb * 4, a[3] + i0 * nb * 4, i1 - i0, kk, yo, out, g0, g1, bias);
      else if (op === 11) k.gemm_q8(a[0], a[1] + i0 * kk * 2, a[2] + i0 * nb * 4, i1 - i0, kk, yo, out, g0, g1, bias);
      else if (op === 12) k.gemm_f32(a[0], a[1] + i0 * kk * 4, i1 - i0, kk, yo, out, g0, g1, bias);
      else k.gemm_f16(a[0], a[1] + i0 * kk * 4, i1 - i0, kk, yo, out, g0, g1, bias);
      return;
    }
    case 20: { const r0 = t * a[6]; k.rms_norm(a[0], a[1], a[2], r0, Math.min(a[3], r0 + a[6]), a[4], bitsToF32(a[5])); return; }
    case 21: { const r0 = t * a[7]; k.layer_norm(a[0], a[1], a[2], a[3], r0, Math.min(a[4], r0 + a[7]), a[5], bitsToF32(a[6])); return; }
    case 22: { const r0 = t * a[9]; k.rope(a[0], a[1], a[2], a[3], r0, Math.min(a[4], r0 + a[9]), a[5], a[6], a[7], a[8]); return; }
    case 30: k.swiglu(a[0], a[1], a[2], t * a[4], Math.min(a[3], t * a[4] + a[4])); return;
    case 31: k.gelu(a[0], a[1], t * a[3], Math.min(a[2], t * a[3] + a[3])); return;
    case 32: k.quick_gelu(a[0], a[1], t * a[3], Math.min(a[2], t * a[3] + a[3])); return;
    case 40: k.attention(a[0], t, a[1] + thread * a[2]); return;
  }
}
const args = new Array(24).fill(0);
function work(seq) {
  for (;;) {
    const c = Atomics.load(ctrl, CLAIM);
    if ((c >>> 16) !== seq) return;
    const lim = Atomics.load(ctrl, LIMIT);
    if ((lim >>> 16) !== seq || (c & 0xffff) >= (lim & 0xffff)) return;
    if (Atomics.compareExchange(ctrl, CLAIM, c, c + 1) !== c) continue;
    // the job's arguments cannot change before this task is counted done
    const op = ctrl[OPS];
    for (let i = 0; i < 24; i++) args[i] = ctrl[ARGS + i] >>> 0;
    task(kernels[ctrl[ARENA]], op, args, c & 0xffff, index);
    Atomics.add(ctrl, DONE, 1);
    Atomics.notify(ctrl, DONE);
  }
}
function loop(seen) {
  for (;;) {
    // spin ~0.2 ms for the next job (a decode step's products come every few tens of µs), then sleep
    let spins = 0;
    let s;
    let until = 0;
    while ((s = Atomics.load(ctrl, SEQ)) === seen) {
      if ((++spins & 1023) === 0) {
        const now = performance.now();
        if (until === 0) until = now + 0.2;
        else if (now > until) Atomics.wait(ctrl, SEQ, seen, 1000);
      }
    }
    // read the job kind consistently with its sequence number
    const op = ctrl[OPS];
    const lim = Atomics.load(ctrl, LIMIT);
    if (Atomics.load(ctrl, SEQ) !== s) continue;
    seen = s;
    if (op === 1) { lastSeen = seen; return; }
    if (op === 2) { if (isNode) process.exit(0); else self.close(); return; }
    work(lim >>> 16);
  }
}
let lastSeen = 0;
function onMessage(m) {
  if (m.type === 'init') {
    ctrl = new Int32Array(m.ctrl);
    index = m.index;
    module = m.module;
    lastSeen = Atomics.load(ctrl, SEQ);
  } else if (m.type === 'arena') {
    kernels[m.index] = new WebAssembly.Instance(module, { env: { memory: m.memory } }).exports;
  }
  Atomics.add(ctrl, ACK, 1);
  Atomics.notify(ctrl, ACK);
  loop(lastSeen);
}
if (isNode) port.on('message', onMessage); else port.onmessage = (e) => onMessage(e.data);
`;
