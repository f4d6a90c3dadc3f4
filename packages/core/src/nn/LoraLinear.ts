// Mirrors peft.tuners.lora.Linear (huggingface/peft, LoRA on torch.nn.Linear)
import * as tf from '@tensorflow/tfjs-core';

import { ErrorCode, OwletError } from '../errors.js';
import { Module } from '../module.js';
import { dropout } from '../ops/dropout.js';
import { linear } from '../ops/linear.js';
import { Init, type Parameter } from '../parameter.js';
import { Linear } from './Linear.js';

export interface LoraLinearOptions {
  /** Rank r (> 0). */
  r: number;
  /** Scale numerator α: the update is scaled by α / r (or α / √r with `use_rslora`). */
  lora_alpha: number;
  /** Dropout on the adapter's input during training (default 0). */
  lora_dropout?: number;
  /** Rank-stabilised scaling α / √r (PEFT `use_rslora`). */
  use_rslora?: boolean;
}

/**
 * A LoRA adapter around a Linear: y = x·Wᵀ + b + (α / r) · B(A(dropout(x))), with A [r, in] and
 * B [out, r] (`lora_A.weight`, `lora_B.weight`). The wrapper takes over the Linear's own `weight`
 * and `bias` parameters under the same keys, so the module tree keeps the checkpoint's key names
 * (`…q_proj.weight`) and gains `…q_proj.lora_A.weight` / `…q_proj.lora_B.weight`, the names PEFT
 * saves under `base_model.model.`.
 *
 * Initialisation as PEFT's `init_lora_weights=True`: A ~ kaiming_uniform(a=√5) = U(−1/√in, 1/√in),
 * B = 0, so a fresh adapter changes nothing. `merge()` folds (α / r)·B·A into W for inference;
 * `unmerge()` takes it out again.
 */
export class LoraLinear extends Module {
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** The wrapped Linear (detached from the tree; its parameters are this module's `weight`/`bias`). */
  readonly base: Linear;
  readonly weight: Parameter;
  readonly bias: Parameter | null;
  readonly lora_A: Linear;
  readonly lora_B: Linear;
  readonly r: number;
  readonly lora_alpha: number;
  readonly lora_dropout: number;
  readonly scaling: number;
  private _merged = false;
  /** When false the adapter is bypassed (PEFT `disable_adapter`). */
  enabled = true;

  constructor(base: Linear, options: LoraLinearOptions) {
    super();
    const { r, lora_alpha } = options;
    const p = options.lora_dropout ?? 0;
    if (!Number.isSafeInteger(r) || r <= 0) {
      throw new OwletError(ErrorCode.INVALID_ARGUMENT, `LoRA rank r must be a positive integer, got ${r}`);
    }
    if (!Number.isFinite(lora_alpha)) {
      throw new OwletError(ErrorCode.INVALID_ARGUMENT, `lora_alpha must be a finite number, got ${lora_alpha}`);
    }
    if (!(p >= 0 && p < 1)) {
      throw new OwletError(ErrorCode.INVALID_ARGUMENT, `lora_dropout must be in [0, 1), got ${p}`);
    }
    this.base = base;
    this.inFeatures = base.inFeatures;
    this.outFeatures = base.outFeatures;
    this.r = r;
    this.lora_alpha = lora_alpha;
    this.lora_dropout = p;
    this.scaling = options.use_rslora ? lora_alpha / Math.sqrt(r) : lora_alpha / r;
    // Registration order as PEFT's state dict: base weight, bias, then lora_A, lora_B.
    this.weight = this.adoptParameter('weight', base.weight);
    this.bias = base.bias ? this.adoptParameter('bias', base.bias) : null;
    const bound = 1 / Math.sqrt(this.inFeatures);
    this.lora_A = this.registerModule(
      'lora_A',
      new Linear(this.inFeatures, r, { bias: false, init: Init.uniform(-bound, bound) }),
    );
    this.lora_B = this.registerModule('lora_B', new Linear(r, this.outFeatures, { bias: false, init: Init.zeros() }));
  }

  /** Whether (α / r)·B·A is currently folded into `weight`. */
  get merged(): boolean {
    return this._merged;
  }

  /** x [..., in] → [..., out] */
  forward(x: tf.Tensor): tf.Tensor {
    return this.scope(() => {
      const y = linear(x, this.weight, this.bias);
      if (this._merged || !this.enabled) return y;
      const a = linear(dropout(x, this.lora_dropout), this.lora_A.weight); // [..., r]
      return tf.add(y, tf.mul(linear(a, this.lora_B.weight), this.scaling)); // [..., out]
    });
  }

  /** (α / r)·B·A in the stored layout of `weight`. */
  private delta(): tf.Tensor {
    return tf.tidy(() => {
      const a = this.lora_A.weight.canonical(); // [r, in]
      const b = this.lora_B.weight.canonical(); // [out, r]
      const d = tf.mul(tf.matMul(b, a), this.scaling); // [out, in]
      return this.weight.storedTransposed ? tf.transpose(d) : d; // -> stored layout
    });
  }

  /** Folds the adapter into `weight` (inference without the extra matmuls). Idempotent. */
  merge(): void {
    this.assertNotDisposed();
    if (this._merged) return;
    const w = this.weight.value;
    const next = tf.tidy(() => tf.add(w, this.delta()));
    w.assign(next);
    next.dispose();
    this._merged = true;
  }

  /** Takes a merged adapter out of `weight` again (up to float32 rounding). Idempotent. */
  unmerge(): void {
    this.assertNotDisposed();
    if (!this._merged) return;
    const w = this.weight.value;
    const next = tf.tidy(() => tf.sub(w, this.delta()));
    w.assign(next);
    next.dispose();
    this._merged = false;
  }
}
