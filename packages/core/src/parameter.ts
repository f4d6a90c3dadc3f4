import * as tf from '@tensorflow/tfjs-core';

import { ErrorCode, OwletError, formatShape } from './errors.js';
import { PackedWeight, type WeightDType, isWeightDType } from './quant/packed.js';

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
  /**
   * A Linear weight, declared `[out, in]` as in the checkpoint. The ops seam may store it
   * transposed (`[in, out]`) on backends where that multiplies faster (see `linearWeightLayout`),
   * or packed outside the tfjs heap as fp32/fp16/q8/q4 (`assignPacked`, `pack`).
   */
  linearWeight?: boolean;
  /**
   * A lookup table `[rows, dim]` (an embedding): like a Linear weight it may be stored packed
   * outside the tfjs heap (`embedding()` then decodes only the rows it looks up); it is never
   * transposed.
   */
  rowTable?: boolean;
}

/** How a backend wants Linear weights stored for `linear()`. */
export type LinearWeightLayout = 'out_in' | 'in_out';

/**
 * Measured with bench/linear-layout.ts on this project's 2-core x86 machine, 1089×1024 · 1024×1024: on tfjs-wasm a matMul
 * with a transposed B (`[out, in]` kept as is) ran at 1.3 GFLOP/s, the same product with B stored
 * `[in, out]` at ~20 GFLOP/s. The cpu backend is not slower with `[in, out]`. WebGPU and tfjs-node
 * handle the transpose in the kernel, so weights stay as declared there.
 */
export const LINEAR_WEIGHT_LAYOUT: Readonly<Record<string, LinearWeightLayout>> = {
  wasm: 'in_out',
  cpu: 'in_out',
  webgpu: 'out_in',
  tensorflow: 'out_in',
};

/** The layout new Linear weights get on the active backend. */
export function linearWeightLayout(): LinearWeightLayout {
  return LINEAR_WEIGHT_LAYOUT[tf.getBackend()] ?? 'out_in';
}

/**
 * A parameter of a Module: its checkpoint shape, its initialiser and, once materialised, a
 * tf.Variable holding its value. A parameter starts unmaterialised (no memory), so a model of the
 * full released size can be built shape-only; `loadStateDict` or `Module.initialize` materialise it.
 */
export class Parameter {
  readonly shape: readonly number[];
  readonly dtype: 'float32' | 'int32';
  readonly init: ParameterInit;
  /** True for Linear weights (declared `[out, in]`), whose storage layout may be transposed. */
  readonly linearWeight: boolean;
  /** True for lookup tables (declared `[rows, dim]`), which may be packed like Linear weights. */
  readonly rowTable: boolean;
  /** Full checkpoint key, set when the owning module tree is walked. */
  key: string;
  private _trainable: boolean;
  private _value: tf.Variable | null = null;
  private _storedTransposed = false;
  private _packed: PackedWeight | null = null;
  /**
   * When set, the next value assigned to an unmaterialised Linear weight is packed as this dtype
   * instead of becoming a tfjs variable (so a streaming loader never holds it twice). Set through
   * `Module.setWeightDTypes`.
   */
  packAs: WeightDType | null = null;

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
    this.linearWeight = options.linearWeight === true && shape.length === 2;
    this.rowTable = options.rowTable === true && shape.length === 2 && !this.linearWeight;
    this._trainable = options.trainable ?? true;
  }

  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  get trainable(): boolean {
    return this._trainable;
  }

  set trainable(t: boolean) {
    if (t && this._packed) {
      throw new OwletError(
        'PARAMETER_PACKED',
        `parameter ${this.key} holds a ${this._packed.dtype} weight outside the tfjs heap and cannot be trained; load it as a float32 tensor (no dtype) to train it`,
        { details: { key: this.key, dtype: this._packed.dtype } },
      );
    }
    this._trainable = t;
    if (this._value) this._value.trainable = t;
  }

  get isMaterialized(): boolean {
    return this._packed !== null || (this._value !== null && !this._value.isDisposed);
  }

  /**
   * The packed weight (fp32/fp16/q8/q4 bytes outside the tfjs heap) this Linear weight holds, or
   * null when its value is a tfjs variable.
   */
  get packed(): PackedWeight | null {
    return this._packed;
  }

  /** How the value is stored: the packed dtype, or `'fp32'` for a tfjs variable. */
  get weightDType(): WeightDType {
    return this._packed?.dtype ?? 'fp32';
  }

  /** A Linear weight or a lookup table: may be stored as a packed weight. */
  get packable(): boolean {
    return this.linearWeight || this.rowTable;
  }

  /**
   * Makes this Linear weight (or lookup table) hold `w` (the parameter takes ownership; its tfjs variable, if any,
   * is freed). Packed weights are inference-only: the parameter becomes non-trainable.
   */
  assignPacked(w: PackedWeight): void {
    if (!this.packable) {
      throw new OwletError(
        ErrorCode.INVALID_ARGUMENT,
        `parameter ${this.key} ${formatShape(this.shape)} is not a Linear weight or a lookup table; only those can be packed`,
        { details: { key: this.key } },
      );
    }
    if (!shapesEqual(w.shape, this.shape)) {
      throw new OwletError(
        ErrorCode.SHAPE_MISMATCH,
        `expected ${formatShape(this.shape)}, got a packed weight ${formatShape(w.shape)} for ${this.key}`,
        { details: { key: this.key, expected: [...this.shape], actual: [...w.shape] } },
      );
    }
    if (this._packed && this._packed !== w) this._packed.dispose();
    if (this._value && !this._value.isDisposed) this._value.dispose();
    this._value = null;
    this._storedTransposed = false;
    this._packed = w;
    this._trainable = false;
  }

  /**
   * Stores this Linear weight as `dtype` outside the tfjs heap, encoding its current value (a packed
   * weight is re-encoded from what it decodes to). A no-op when it already has that dtype.
   */
  pack(dtype: WeightDType): void {
    if (!isWeightDType(dtype)) {
      throw new OwletError(ErrorCode.INVALID_ARGUMENT, `unknown weight dtype ${JSON.stringify(dtype)}`);
    }
    if (this._packed?.dtype === dtype) return;
    const values = this.canonicalValues();
    this.assignPacked(PackedWeight.fromFloat32(values, this.shape, dtype));
  }

  /** Turns a packed weight back into a (non-trainable) float32 tfjs variable holding its decoded values. */
  unpack(): void {
    const p = this._packed;
    if (!p) return;
    const t = p.toTensor();
    this._packed = null;
    p.dispose();
    try {
      this.assign(t);
    } finally {
      t.dispose();
    }
  }

  /** Float32 values in the declared layout (decoded for packed weights). */
  private canonicalValues(): Float32Array {
    if (this._packed) return this._packed.dequantize();
    const t = this.canonical();
    try {
      return t.dataSync() as Float32Array;
    } finally {
      t.dispose();
    }
  }

  /**
   * True when the stored value is the transpose of the declared shape (a Linear weight stored
   * `[in, out]`). Pass the Parameter itself to `linear()`; use `canonical()` for the declared layout.
   */
  get storedTransposed(): boolean {
    return this._storedTransposed;
  }

  /**
   * The stored value (the variable optimizers update). For a Linear weight this may be the
   * transpose of the declared shape: see `storedTransposed` and `canonical()`. Throws
   * `OwletError(PARAMETER_NOT_LOADED)` if neither loaded nor initialised.
   */
  get value(): tf.Variable {
    if (this._packed) {
      throw new OwletError(
        'PARAMETER_PACKED',
        `parameter ${this.key} ${formatShape(this.shape)} holds a ${this._packed.dtype} weight outside the tfjs heap: pass the Parameter to linear(), or use canonical() for a float32 copy`,
        { details: { key: this.key, dtype: this._packed.dtype } },
      );
    }
    if (this._value === null || this._value.isDisposed) {
      throw new OwletError(
        'PARAMETER_NOT_LOADED',
        `parameter ${this.key} ${formatShape(this.shape)} has no value: load a checkpoint (loadStateDict) or call initialize() first`,
        { details: { key: this.key } },
      );
    }
    return this._value;
  }

  /** The value in the declared (checkpoint) layout, as a new tensor the caller owns. */
  canonical(): tf.Tensor {
    if (this._packed) return this._packed.toTensor();
    const v = this.value;
    return this._storedTransposed ? tf.transpose(v) : tf.clone(v);
  }

  /**
   * Sets the value from `t`, given in the declared (checkpoint) layout, cast to this dtype. The
   * parameter shares `t`'s data where it can (no copy); the caller keeps ownership of `t`.
   */
  assign(t: tf.Tensor): void {
    if (!shapesEqual(t.shape, this.shape)) {
      throw new OwletError(
        ErrorCode.SHAPE_MISMATCH,
        `expected ${formatShape(this.shape)}, got ${formatShape(t.shape)} for ${this.key}`,
        { details: { key: this.key, expected: [...this.shape], actual: t.shape } },
      );
    }
    const live = this._value !== null && !this._value.isDisposed;
    const packAs = this._packed?.dtype ?? (live ? null : this.packAs);
    if (packAs !== null && this.packable) {
      // A packed weight keeps its dtype (new values are encoded the same way); a weight marked
      // `packAs` is encoded straight from `t`, never becoming a tfjs variable.
      const values = t.dtype === 'float32' ? (t.dataSync() as Float32Array) : Float32Array.from(t.dataSync());
      this.assignPacked(PackedWeight.fromFloat32(values, this.shape, packAs));
      return;
    }
    // A live variable keeps its layout (optimizer state depends on it); a new one takes the
    // active backend's preferred layout.
    const transpose = live ? this._storedTransposed : this.linearWeight && linearWeightLayout() === 'in_out';
    const v = tf.tidy(() => {
      const c = t.dtype === this.dtype ? t : tf.cast(t, this.dtype);
      return transpose ? tf.transpose(c) : c;
    });
    try {
      if (live) {
        (this._value as tf.Variable).assign(v);
      } else {
        this._value = tf.variable(v, this._trainable);
        this._storedTransposed = transpose;
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
    this._packed?.dispose();
    this._packed = null;
    this._value = null;
    this._storedTransposed = false;
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
