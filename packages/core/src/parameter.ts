/**
 * A parameter of a Module: its checkpoint shape, its initialiser and, once materialised, a
 * tf.Variable holding its value. A parameter starts unmaterialised (no memory), so a model of the
 * full released size can be built shape-only; `loadStateDict` or `Module.initialize` materialise it.
 */
import * as tf from '@tensorflow/tfjs-core';

import { ErrorCode, OwletError, formatShape } from './errors.js';

/** How a parameter is filled by `Module.initialize()`. */
export type ParameterInit =
  | { kind: 'zeros' }
  | { kind: 'ones' }
  | { kind: 'constant'; value: number }
  | { kind: 'normal'; mean?: number; std: number }
  | { kind: 'uniform'; low: number; high: number }
  | { kind: 'custom'; fn: (shape: number[], seed: number) => tf.Tensor };

export const Init = {
  zeros: (): ParameterInit => ({ kind: 'zeros' }),
  ones: (): ParameterInit => ({ kind: 'ones' }),
  constant: (value: number): ParameterInit => ({ kind: 'constant', value }),
  normal: (std: number, mean = 0): ParameterInit => ({ kind: 'normal', std, mean }),
  uniform: (low: number, high: number): ParameterInit => ({ kind: 'uniform', low, high }),
  custom: (fn: (shape: number[], seed: number) => tf.Tensor): ParameterInit => ({ kind: 'custom', fn }),
};

export interface ParameterOptions {
  init?: ParameterInit;
  trainable?: boolean;
  dtype?: 'float32' | 'int32';
}

export class Parameter {
  readonly shape: readonly number[];
  readonly dtype: 'float32' | 'int32';
  readonly init: ParameterInit;
  /** Full checkpoint key, set when the owning module tree is walked. */
  key: string;
  private _trainable: boolean;
  private _value: tf.Variable | null = null;

  constructor(key: string, shape: readonly number[], options: ParameterOptions = {}) {
    for (const d of shape) {
      if (!Number.isSafeInteger(d) || d < 0) {
        throw new OwletError(
          ErrorCode.INVALID_ARGUMENT,
          `parameter ${key}: shape ${formatShape(shape)} has a dimension that is not a non-negative integer`,
        );
      }
    }
    this.key = key;
    this.shape = Object.freeze([...shape]);
    this.dtype = options.dtype ?? 'float32';
    this.init = options.init ?? { kind: 'zeros' };
    this._trainable = options.trainable ?? true;
  }

  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  get trainable(): boolean {
    return this._trainable;
  }

  set trainable(t: boolean) {
    this._trainable = t;
    if (this._value) this._value.trainable = t;
  }

  get isMaterialized(): boolean {
    return this._value !== null && !this._value.isDisposed;
  }

  /** The value; throws `OwletError(PARAMETER_NOT_LOADED)` if neither loaded nor initialised. */
  get value(): tf.Variable {
    if (this._value === null || this._value.isDisposed) {
      throw new OwletError(
        'PARAMETER_NOT_LOADED',
        `parameter ${this.key} ${formatShape(this.shape)} has no value: load a checkpoint (loadStateDict) or call initialize() first`,
        { details: { key: this.key } },
      );
    }
    return this._value;
  }

  /**
   * Sets the value from `t` (same shape; cast to this dtype). The parameter shares `t`'s data
   * (no copy); the caller keeps ownership of `t` and may dispose it.
   */
  assign(t: tf.Tensor): void {
    if (!shapesEqual(t.shape, this.shape)) {
      throw new OwletError(
        ErrorCode.SHAPE_MISMATCH,
        `expected ${formatShape(this.shape)}, got ${formatShape(t.shape)} for ${this.key}`,
        { details: { key: this.key, expected: [...this.shape], actual: t.shape } },
      );
    }
    const v = t.dtype === this.dtype ? t : tf.cast(t, this.dtype);
    try {
      if (this._value && !this._value.isDisposed) {
        this._value.assign(v);
      } else {
        this._value = tf.variable(v, this._trainable);
      }
    } finally {
      if (v !== t) v.dispose();
    }
  }

  /** Fills the parameter from its initialiser (deterministic for a given seed). */
  initialize(seed: number): void {
    const t = tf.tidy(() => makeInit(this.init, [...this.shape], this.dtype, seed));
    try {
      this.assign(t);
    } finally {
      t.dispose();
    }
  }

  dispose(): void {
    if (this._value && !this._value.isDisposed) this._value.dispose();
    this._value = null;
  }
}

function makeInit(init: ParameterInit, shape: number[], dtype: 'float32' | 'int32', seed: number): tf.Tensor {
  switch (init.kind) {
    case 'zeros':
      return tf.zeros(shape, dtype);
    case 'ones':
      return tf.ones(shape, dtype);
    case 'constant':
      return tf.fill(shape, init.value, dtype);
    case 'normal':
      return tf.randomNormal(shape, init.mean ?? 0, init.std, 'float32', seed);
    case 'uniform':
      return tf.randomUniform(shape, init.low, init.high, 'float32', seed);
    case 'custom':
      return init.fn(shape, seed);
  }
}

export function shapesEqual(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
