/**
 * The source of a CPU engine worker thread (Node worker_threads with `eval: true`, or a browser
 * Web Worker from a Blob URL). It instantiates the kernel module on every arena memory it is sent,
 * then loops: wait for the job counter to move (a short spin, then Atomics.wait), run its share of
 * the output rows, count itself done. `YIELD` returns to the event loop (to receive a new arena);
 * `EXIT` stops. Slots and op codes match engine.ts (CTRL, OP).
 */
export const WORKER_SOURCE = `
'use strict';
const isNode = typeof process !== 'undefined' && process.versions && process.versions.node;
let port;
if (isNode) { port = require('node:worker_threads').parentPort; } else { port = self; }
const SEQ = 0, DONE = 1, ACK = 2, OPS = 3, ARENA = 4, THREADS = 5, ROWS = 6, ARGS = 8;
let ctrl = null, index = 0, module = null;
const kernels = [];
function share(k, op, a, r0, r1) {
  if (r1 <= r0) return;
  switch (op) {
    case 10: k.gemm_q4(a[0], a[1], a[2], a[3], a[4], a[5], a[6], r0, r1, a[7]); return;
    case 11: k.gemm_q8(a[0], a[1], a[2], a[3], a[4], a[5], a[6], r0, r1, a[7]); return;
    case 12: k.gemm_f32(a[0], a[1], a[2], a[3], a[4], a[5], r0, r1, a[6]); return;
    case 13: k.gemm_f16(a[0], a[1], a[2], a[3], a[4], a[5], r0, r1, a[6]); return;
  }
}
const args = new Array(12).fill(0);
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
    seen = s;
    const op = ctrl[OPS];
    if (op === 1) { lastSeen = seen; return; }
    if (op === 2) { if (isNode) process.exit(0); else self.close(); return; }
    const t = ctrl[THREADS], rows = ctrl[ROWS];
    for (let i = 0; i < 12; i++) args[i] = ctrl[ARGS + i] >>> 0;
    const k = kernels[ctrl[ARENA]];
    share(k, op, args, Math.floor((rows * index) / t), Math.floor((rows * (index + 1)) / t));
    Atomics.add(ctrl, DONE, 1);
    Atomics.notify(ctrl, DONE);
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
