import * as tf from '@tensorflow/tfjs-core';
import { OwletError, type Parameter } from '@owlet/core';

import { TrainerErrorCode } from '../errors.js';

export interface AdamWGroupOptions {
  /** Learning rate before the schedule multiplier. */
  lr: number;
  /** Multiplier on `lr` (layer-wise decay). */
  lr_scale: number;
  weight_decay: number;
  betas: readonly [number, number];
  eps: number;
}

export interface AdamWParamGroup extends AdamWGroupOptions {
  name: string;
  keys: readonly string[];
}

interface SlotState {
  m: tf.Tensor;
  v: tf.Tensor;
  step: number;
}

/** The optimizer's state in the checkpoint layout: tensors by `exp_avg/<key>`, `exp_avg_sq/<key>`, steps by key. */
export interface AdamWStateDict {
  tensors: Map<string, tf.Tensor>;
  steps: Record<string, number>;
}

function checkGroup(g: AdamWParamGroup): void {
  const bad = (what: string) =>
    new OwletError(TrainerErrorCode.INVALID_TRAINING_ARGS, `parameter group ${g.name}: ${what}`, {
      details: { group: g.name },
    });
  if (!(g.lr >= 0) || !Number.isFinite(g.lr)) throw bad(`learning rate must be ≥ 0, got ${g.lr}`);
  if (!(g.lr_scale >= 0) || !Number.isFinite(g.lr_scale)) throw bad(`lr_scale must be ≥ 0, got ${g.lr_scale}`);
  if (!(g.weight_decay >= 0) || !Number.isFinite(g.weight_decay))
    throw bad(`weight_decay must be ≥ 0, got ${g.weight_decay}`);
  for (const [i, b] of g.betas.entries())
    if (!(b >= 0 && b < 1)) throw bad(`adam_beta${i + 1} must be in [0, 1), got ${b}`);
  if (!(g.eps > 0)) throw bad(`adam_epsilon must be > 0, got ${g.eps}`);
}

/**
 * How the update runs: `ops` as tfjs ops on the device (nine elementwise kernels per parameter);
 * `host` as one fused float64 loop over the values on the host, written back as float32. `auto`:
 * `host` on tfjs-cpu (where each elementwise kernel is a JS loop of its own: on a 6.5M-parameter
 * model the ops path spent 2 s of a 10 s step in Add/Multiply), `ops` elsewhere (no device reads).
 */
export type AdamWImpl = 'auto' | 'ops' | 'host';

export const HOST_UPDATE_BACKENDS: ReadonlySet<string> = new Set(['cpu']);

/**
 * AdamW with decoupled weight decay, the update of `torch.optim.AdamW` (single-tensor path,
 * torch 1.13 / 2.0), per parameter group:
 *
 *   p ← p · (1 − lr · wd)
 *   m ← β1 · m + (1 − β1) · g
 *   v ← β2 · v + (1 − β2) · g²
 *   p ← p − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε)
 *
 * with t the parameter's own step count (a parameter that got no gradient is skipped, as torch
 * skips `grad is None`). State is kept in the parameter's stored layout and saved in the
 * checkpoint layout.
 */
export class AdamW {
  readonly groups: readonly AdamWParamGroup[];
  readonly impl: AdamWImpl;
  private readonly groupOf = new Map<string, AdamWParamGroup>();
  private readonly state = new Map<string, SlotState>();

  constructor(groups: readonly AdamWParamGroup[], options: { impl?: AdamWImpl } = {}) {
    this.impl = options.impl ?? 'auto';
    for (const g of groups) {
      checkGroup(g);
      for (const k of g.keys) {
        if (this.groupOf.has(k)) {
          throw new OwletError(TrainerErrorCode.INVALID_TRAINING_ARGS, `${k} is in two parameter groups`);
        }
        this.groupOf.set(k, g);
      }
    }
    this.groups = groups;
  }

  /** The group a parameter key belongs to. */
  group(key: string): AdamWParamGroup | undefined {
    return this.groupOf.get(key);
  }

  /** The learning rate used for `key` at schedule multiplier `multiplier`. */
  learningRate(key: string, multiplier: number): number {
    const g = this.groupOf.get(key);
    return g ? g.lr * g.lr_scale * multiplier : 0;
  }

  /** Steps taken by a parameter (0 before its first update). */
  stepCount(key: string): number {
    return this.state.get(key)?.step ?? 0;
  }

  /**
   * One update. `grads` holds each parameter's gradient in its stored layout (the caller keeps
   * ownership); parameters without a gradient are skipped. `multiplier` is the schedule's lambda.
   */
  step(params: ReadonlyMap<string, Parameter>, grads: ReadonlyMap<string, tf.Tensor>, multiplier: number): void {
    for (const [key, g] of grads) {
      const group = this.groupOf.get(key);
      const p = params.get(key);
      if (!group || !p) continue;
      const lr = group.lr * group.lr_scale * multiplier;
      const [b1, b2] = group.betas;
      const prev = this.state.get(key);
      const t = (prev?.step ?? 0) + 1;
      const value = p.value;
      const bc1 = 1 - b1 ** t;
      const bc2 = 1 - b2 ** t;
      const stepSize = lr / bc1;
      const bc2Sqrt = Math.sqrt(bc2);
      const host = this.impl === 'host' || (this.impl === 'auto' && HOST_UPDATE_BACKENDS.has(tf.getBackend()));
      if (host) {
        const pv = value.dataSync() as Float32Array;
        const gv = g.dataSync() as Float32Array;
        const mv = prev ? (prev.m.dataSync() as Float32Array) : null;
        const vv = prev ? (prev.v.dataSync() as Float32Array) : null;
        const n = pv.length;
        const pOut = new Float32Array(n);
        const mOut = new Float32Array(n);
        const vOut = new Float32Array(n);
        const decay = 1 - lr * group.weight_decay;
        for (let i = 0; i < n; i++) {
          const gi = gv[i] as number;
          const m = (mv ? (mv[i] as number) * b1 : 0) + gi * (1 - b1);
          const v = (vv ? (vv[i] as number) * b2 : 0) + gi * gi * (1 - b2);
          mOut[i] = m;
          vOut[i] = v;
          pOut[i] = (pv[i] as number) * decay - stepSize * (m / (Math.sqrt(v) / bc2Sqrt + group.eps));
        }
        const updated = tf.tensor(pOut, value.shape, 'float32');
        value.assign(updated);
        updated.dispose();
        if (prev) tf.dispose([prev.m, prev.v]);
        this.state.set(key, {
          m: tf.tensor(mOut, value.shape, 'float32'),
          v: tf.tensor(vOut, value.shape, 'float32'),
          step: t,
        });
        continue;
      }
      const next = tf.tidy(() => {
        const m0 = prev ? prev.m : tf.zerosLike(value);
        const v0 = prev ? prev.v : tf.zerosLike(value);
        const decayed = tf.mul(value, 1 - lr * group.weight_decay); // param.mul_(1 - lr * weight_decay)
        const m = tf.add(tf.mul(m0, b1), tf.mul(g, 1 - b1)); // exp_avg.mul_(β1).add_(g, alpha=1 − β1)
        const v = tf.add(tf.mul(v0, b2), tf.mul(tf.mul(g, g), 1 - b2)); // exp_avg_sq.mul_(β2).addcmul_(g, g, value=1 − β2)
        const denom = tf.add(tf.div(tf.sqrt(v), bc2Sqrt), group.eps); // (√v / √bc2).add_(ε)
        const updated = tf.sub(decayed, tf.mul(tf.div(m, denom), stepSize)); // param.addcdiv_(m, denom, value=−lr/bc1)
        return { m, v, updated };
      });
      value.assign(next.updated);
      next.updated.dispose();
      if (prev) tf.dispose([prev.m, prev.v]);
      this.state.set(key, { m: next.m, v: next.v, step: t });
    }
  }

  /** The state in the checkpoint layout (new tensors the caller owns). */
  stateDict(params: ReadonlyMap<string, Parameter>): AdamWStateDict {
    const tensors = new Map<string, tf.Tensor>();
    const steps: Record<string, number> = {};
    for (const [key, s] of this.state) {
      const transposed = params.get(key)?.storedTransposed ?? false;
      tensors.set(`exp_avg/${key}`, transposed ? tf.transpose(s.m) : tf.clone(s.m));
      tensors.set(`exp_avg_sq/${key}`, transposed ? tf.transpose(s.v) : tf.clone(s.v));
      steps[key] = s.step;
    }
    return { tensors, steps };
  }

  /**
   * Replaces the state from a state dict (checkpoint layout). Every key must belong to a group
   * and match its parameter's shape; nothing changes when it throws. The caller keeps the tensors.
   */
  loadStateDict(params: ReadonlyMap<string, Parameter>, sd: AdamWStateDict): void {
    const next = new Map<string, SlotState>();
    const fail = (msg: string) => new OwletError(TrainerErrorCode.CHECKPOINT_MISMATCH, `optimizer state: ${msg}`);
    for (const [key, step] of Object.entries(sd.steps)) {
      const p = params.get(key);
      if (!p || !this.groupOf.has(key)) throw fail(`${key} is not a trainable parameter of this model`);
      if (!Number.isSafeInteger(step) || step < 1) throw fail(`${key} has step ${step}`);
      const m = sd.tensors.get(`exp_avg/${key}`);
      const v = sd.tensors.get(`exp_avg_sq/${key}`);
      if (!m || !v) throw fail(`exp_avg/exp_avg_sq of ${key} missing`);
      for (const t of [m, v]) {
        if (t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i])) {
          throw fail(`expected [${p.shape.join(', ')}], got [${t.shape.join(', ')}] for ${key}`);
        }
      }
      next.set(key, { m: m as tf.Tensor, v: v as tf.Tensor, step });
    }
    const extra = [...sd.tensors.keys()].filter((k) => !next.has(k.replace(/^exp_avg(_sq)?\//, '')));
    if (extra.length > 0) throw fail(`unexpected ${extra.slice(0, 5).join(', ')}`);
    this.reset();
    for (const [key, s] of next) {
      const transposed = params.get(key)?.storedTransposed ?? false;
      this.state.set(key, {
        m: transposed ? tf.transpose(s.m) : tf.clone(s.m),
        v: transposed ? tf.transpose(s.v) : tf.clone(s.v),
        step: s.step,
      });
    }
  }

  /** Drops the moment estimates (the next step starts from t = 1). */
  reset(): void {
    for (const s of this.state.values()) tf.dispose([s.m, s.v]);
    this.state.clear();
  }

  dispose(): void {
    this.reset();
  }
}

export interface ClipResult {
  /** Global L2 norm of the gradients before clipping (torch `clip_grad_norm_`'s return value). */
  total_norm: number;
  /** The factor the gradients were multiplied by (1 when not clipped). */
  clip_coef: number;
}

/**
 * Global-norm clipping as `torch.nn.utils.clip_grad_norm_(params, max_norm)`: the norm of the
 * per-tensor norms; when max_norm / (norm + 1e−6) < 1 every gradient is scaled by it. Replaces the
 * map's tensors (disposing the old ones). `max_norm` ≤ 0 only measures.
 */
export async function clipGradNorm(grads: Map<string, tf.Tensor>, maxNorm: number): Promise<ClipResult> {
  if (grads.size === 0) return { total_norm: 0, clip_coef: 1 };
  // Σ‖g‖² over tensors, then √ (= torch's norm of the per-tensor norms); tf.norm would run Abs + Pow
  // per tensor, and tf.addN of more than two tensors returns the sum of the first two on
  // tfjs-webgpu 4.22 (measured), so the per-tensor sums are stacked and summed.
  const normT = tf.tidy(() => tf.sqrt(tf.sum(tf.stack([...grads.values()].map((g) => tf.sum(tf.square(g)))))));
  const total = (await normT.data())[0] as number;
  normT.dispose();
  let coef = 1;
  if (maxNorm > 0) {
    const c = maxNorm / (total + 1e-6);
    if (c < 1) {
      coef = c;
      for (const [k, g] of grads) {
        grads.set(k, tf.mul(g, c));
        g.dispose();
      }
    }
  }
  return { total_norm: total, clip_coef: coef };
}
