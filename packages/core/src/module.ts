import * as tf from '@tensorflow/tfjs-core';

import { ErrorCode, OwletError, formatShape } from './errors.js';
import { Parameter, type ParameterOptions, shapesEqual } from './parameter.js';
import type { WeightDType } from './quant/packed.js';
import { type DTypeRequest, type PackDecision, packDecision, resolveDTypeRequest } from './quant/policy.js';

/** What `setWeightDTypes` decided, by checkpoint key. */
export interface WeightDTypeReport {
  /** Linear weights stored packed, and their dtype. */
  packed: Map<string, WeightDType>;
  /** Linear weights whose group asked for a quantized dtype but whose rows are not whole 32-value blocks (kept float32). */
  partialBlocks: { key: string; wanted: WeightDType; shape: number[] }[];
}

export type StateDictInput =
  | Map<string, tf.Tensor>
  | Record<string, tf.Tensor>
  | Iterable<readonly [string, tf.Tensor]>;

export interface LoadStateDictOptions {
  /** Every parameter must be present and every key known (default true). */
  strict?: boolean;
  /** Checkpoint keys to ignore silently (e.g. `/\.rotary_emb\.inv_freq$/`). */
  ignore?: readonly (string | RegExp)[];
}

export interface ShapeMismatch {
  key: string;
  expected: number[];
  actual: number[];
}

export interface StateDictReport {
  loaded: string[];
  missing: string[];
  unexpected: string[];
  ignored: string[];
  mismatched: ShapeMismatch[];
}

/** Thrown by `loadStateDict` / `checkStateDict`; nothing was changed when it is thrown. */
export class StateDictError extends OwletError {
  override readonly name = 'StateDictError';
  readonly report: StateDictReport;

  constructor(report: StateDictReport) {
    const lines: string[] = [];
    const list = (xs: string[]) => (xs.length > 20 ? [...xs.slice(0, 20), `… ${xs.length - 20} more`] : xs);
    if (report.missing.length)
      lines.push(`missing keys (${report.missing.length}): ${list(report.missing).join(', ')}`);
    if (report.unexpected.length) {
      lines.push(`unexpected keys (${report.unexpected.length}): ${list(report.unexpected).join(', ')}`);
    }
    for (const m of report.mismatched.slice(0, 20)) {
      lines.push(`expected ${formatShape(m.expected)}, checkpoint has ${formatShape(m.actual)} for ${m.key}`);
    }
    if (report.mismatched.length > 20) lines.push(`… ${report.mismatched.length - 20} more shape mismatches`);
    super(ErrorCode.STATE_DICT_MISMATCH, `state dict does not match the model:\n  ${lines.join('\n  ')}`, {
      details: { ...report },
    });
    this.report = report;
  }
}

function toEntries(input: StateDictInput): [string, tf.Tensor][] {
  if (input instanceof Map) return [...input.entries()];
  if (typeof (input as Iterable<unknown>)[Symbol.iterator] === 'function') {
    return [...(input as Iterable<readonly [string, tf.Tensor]>)].map(([k, v]) => [k, v]);
  }
  return Object.entries(input as Record<string, tf.Tensor>);
}

function matches(key: string, patterns: readonly (string | RegExp)[] | undefined): boolean {
  if (!patterns) return false;
  return patterns.some((p) => (typeof p === 'string' ? p === key : p.test(key)));
}

const KEY_SEGMENT = /^[A-Za-z0-9_]+$/;

/**
 * Module: a node of the parameter tree. Children and parameters are registered under their exact
 * checkpoint key segment, so `namedParameters()` yields the Hugging Face keys of the released
 * checkpoints (`model.layers.3.self_attn.k_proj.multiway.1.weight`) and loading is an identity map.
 */
export abstract class Module {
  private readonly _children = new Map<string, Module>();
  private readonly _params = new Map<string, Parameter>();
  private _parent: Module | null = null;
  private _nameInParent = '';
  private _disposed = false;

  /** The full checkpoint path of this module (`model.layers.0.self_attn`), '' for a root. */
  get path(): string {
    if (!this._parent) return '';
    const p = this._parent.path;
    return p ? `${p}.${this._nameInParent}` : this._nameInParent;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  protected registerModule<M extends Module>(name: string, module: M): M {
    this.checkSegment(name);
    if (module._parent && module._parent !== this) {
      throw new OwletError(
        ErrorCode.DUPLICATE_KEY,
        `module already registered under ${module.path}; cannot register it again as ${this.join(name)}`,
      );
    }
    module._parent = this;
    module._nameInParent = name;
    this._children.set(name, module);
    return module;
  }

  protected registerParameter(name: string, shape: readonly number[], options: ParameterOptions = {}): Parameter {
    this.checkSegment(name);
    const p = new Parameter(this.join(name), shape, options);
    this._params.set(name, p);
    return p;
  }

  /**
   * Registers an existing Parameter (owned by a module that is being replaced, e.g. the Linear a
   * LoRA wrapper takes over) under `name`. The Parameter keeps its value; this module now owns it.
   */
  protected adoptParameter(name: string, p: Parameter): Parameter {
    this.checkSegment(name);
    this._params.set(name, p);
    p.key = this.join(name);
    return p;
  }

  /**
   * Puts `next` where the child `name` was: same key segment, same place in the tree, and every
   * own field of this module that referenced the old child now references `next` (so forward code
   * such as `this.q_proj.forward(x)` runs the new module). Returns the old child, detached and not
   * disposed: its parameters may have been adopted by `next`.
   */
  replaceModule(name: string, next: Module): Module {
    this.assertNotDisposed();
    const old = this._children.get(name);
    if (!old) {
      throw new OwletError(
        ErrorCode.INVALID_ARGUMENT,
        `${this.path || '<root>'} has no child module ${JSON.stringify(name)}`,
      );
    }
    if (next._parent && next._parent !== this) {
      throw new OwletError(
        ErrorCode.DUPLICATE_KEY,
        `module already registered under ${next.path}; cannot register it again as ${this.join(name)}`,
      );
    }
    this._children.set(name, next);
    next._parent = this;
    next._nameInParent = name;
    old._parent = null;
    old._nameInParent = '';
    const self = this as unknown as Record<string, unknown>;
    for (const k of Object.keys(self)) if (self[k] === old) self[k] = next;
    this.onChildReplaced(name, old, next);
    return old;
  }

  /** Hook for containers that index their children elsewhere (ModuleList). */
  protected onChildReplaced(_name: string, _old: Module, _next: Module): void {}

  private join(name: string): string {
    const p = this.path;
    return p ? `${p}.${name}` : name;
  }

  private checkSegment(name: string): void {
    if (!KEY_SEGMENT.test(name)) {
      throw new OwletError(
        ErrorCode.INVALID_ARGUMENT,
        `invalid key segment ${JSON.stringify(name)} in ${this.path || '<root>'}`,
      );
    }
    if (this._children.has(name) || this._params.has(name)) {
      throw new OwletError(ErrorCode.DUPLICATE_KEY, `${this.join(name)} is registered twice`);
    }
  }

  /** Direct children in registration order. */
  children(): IterableIterator<[string, Module]> {
    return this._children.entries();
  }

  /** Every module below (and including) this one, with its path relative to this module. */
  *namedModules(prefix = ''): Generator<[string, Module]> {
    yield [prefix, this];
    for (const [name, child] of this._children) {
      yield* child.namedModules(prefix ? `${prefix}.${name}` : name);
    }
  }

  /** Every parameter with its full checkpoint key (relative to this module), in registration order. */
  *namedParameters(prefix = ''): Generator<[string, Parameter]> {
    for (const [name, p] of this._params) {
      const key = prefix ? `${prefix}.${name}` : name;
      p.key = key;
      yield [key, p];
    }
    for (const [name, child] of this._children) {
      yield* child.namedParameters(prefix ? `${prefix}.${name}` : name);
    }
  }

  parameters(): Parameter[] {
    return [...this.namedParameters()].map(([, p]) => p);
  }

  /** Number of scalar parameters (materialised or not). */
  numParameters(options: { trainableOnly?: boolean } = {}): number {
    let n = 0;
    for (const p of this.parameters()) if (!options.trainableOnly || p.trainable) n += p.size;
    return n;
  }

  /** The parameter at `key` (relative to this module). */
  getParameter(key: string): Parameter | undefined {
    for (const [k, p] of this.namedParameters()) if (k === key) return p;
    return undefined;
  }

  /**
   * Materialised parameter values by key, in the checkpoint layout. The tensors are new handles
   * the caller owns (and disposes); they share data with the parameters where the layout allows.
   */
  stateDict(): Map<string, tf.Tensor> {
    const out = new Map<string, tf.Tensor>();
    for (const [k, p] of this.namedParameters()) if (p.isMaterialized) out.set(k, p.canonical());
    return out;
  }

  /**
   * Compares checkpoint keys and shapes with this module without touching any value. Use it with a
   * streaming reader (which knows every key and shape from its headers) before streaming tensors in.
   */
  checkStateDict(
    entries: Iterable<readonly [string, readonly number[]]>,
    options: LoadStateDictOptions = {},
  ): StateDictReport {
    const strict = options.strict ?? true;
    const params = new Map(this.namedParameters());
    const report: StateDictReport = { loaded: [], missing: [], unexpected: [], ignored: [], mismatched: [] };
    const seen = new Set<string>();
    for (const [key, shape] of entries) {
      if (seen.has(key)) {
        throw new OwletError(ErrorCode.DUPLICATE_KEY, `state dict has ${key} twice`);
      }
      seen.add(key);
      const p = params.get(key);
      if (!p) {
        if (matches(key, options.ignore)) report.ignored.push(key);
        else report.unexpected.push(key);
        continue;
      }
      if (!shapesEqual(shape, p.shape)) {
        report.mismatched.push({ key, expected: [...p.shape], actual: [...shape] });
        continue;
      }
      report.loaded.push(key);
    }
    for (const key of params.keys()) if (!seen.has(key)) report.missing.push(key);
    const bad = report.mismatched.length > 0 || (strict && (report.missing.length > 0 || report.unexpected.length > 0));
    if (bad) throw new StateDictError(report);
    return report;
  }

  /**
   * Loads parameter values. Strict by default: every missing key, unexpected key and shape mismatch
   * is reported in one `StateDictError`, and nothing is assigned when it is thrown. The module shares
   * the given tensors' data (no copy); the caller keeps ownership of them.
   */
  loadStateDict(input: StateDictInput, options: LoadStateDictOptions = {}): StateDictReport {
    this.assertNotDisposed();
    const entries = toEntries(input);
    const report = this.checkStateDict(
      entries.map(([k, t]) => [k, t.shape] as const),
      options,
    );
    const params = new Map(this.namedParameters());
    for (const [key, t] of entries) params.get(key)?.assign(t);
    return report;
  }

  /** Loads one tensor by key (for streaming loaders); returns false if the key is not a parameter. */
  loadParameter(key: string, t: tf.Tensor): boolean {
    this.assertNotDisposed();
    const p = this.getParameter(key);
    if (!p) return false;
    p.assign(t);
    return true;
  }

  /**
   * Fills every parameter that has no value yet from its initialiser. Seeds are derived from `seed`
   * and the parameter's index, so the result is reproducible.
   */
  initialize(options: { seed?: number; overwrite?: boolean } = {}): this {
    this.assertNotDisposed();
    const seed = options.seed ?? 0;
    let i = 0;
    for (const [, p] of this.namedParameters()) {
      i++;
      if (p.isMaterialized && !options.overwrite) continue;
      p.initialize(seed * 1_000_003 + i);
    }
    return this;
  }

  /**
   * Chooses how Linear weights are stored (`dtype: 'q4'`, or a per-group map; see the policy in
   * `quant/policy.ts`): each parameter the request packs is marked so the next value loaded into it
   * is encoded straight into that dtype (outside the tfjs heap), and one already materialised is
   * re-encoded now. Parameters the request does not pack are left as they are. Call it before
   * loading a checkpoint to quantize at load time, tensor by tensor.
   */
  setWeightDTypes(request: DTypeRequest): WeightDTypeReport {
    this.assertNotDisposed();
    const resolved = resolveDTypeRequest(request);
    const report: WeightDTypeReport = { packed: new Map(), partialBlocks: [] };
    const decisions: [Parameter, PackDecision][] = [];
    for (const [key, p] of this.namedParameters())
      decisions.push([p, packDecision(resolved, key, p.shape, p.packable)]);
    for (const [p, d] of decisions) {
      if (d.dtype !== null) {
        p.packAs = d.dtype;
        if (p.isMaterialized) p.pack(d.dtype);
        report.packed.set(p.key, d.dtype);
      } else {
        p.packAs = null;
        if (d.reason === 'partial-blocks')
          report.partialBlocks.push({ key: p.key, wanted: d.wanted, shape: [...p.shape] });
      }
    }
    return report;
  }

  /** Bytes of the parameter values: tfjs tensors (4 per float32 value) and packed weights. */
  weightBytes(): { tensor: number; packed: number } {
    let tensor = 0;
    let packed = 0;
    for (const p of this.parameters()) {
      if (p.packed) packed += p.packed.byteLength;
      else if (p.isMaterialized) tensor += p.size * 4;
    }
    return { tensor, packed };
  }

  /** Keys of parameters that have no value yet. */
  unmaterializedKeys(): string[] {
    return [...this.namedParameters()].filter(([, p]) => !p.isMaterialized).map(([k]) => k);
  }

  /**
   * Sets `trainable` on every parameter whose key matches (all when no pattern is given); returns
   * how many parameters changed.
   */
  setTrainable(trainable: boolean, pattern?: string | RegExp | ((key: string) => boolean)): number {
    let n = 0;
    for (const [k, p] of this.namedParameters()) {
      const hit =
        pattern === undefined ||
        (typeof pattern === 'string'
          ? k === pattern || k.startsWith(`${pattern}.`)
          : typeof pattern === 'function'
            ? pattern(k)
            : pattern.test(k));
      if (hit) {
        p.trainable = trainable;
        n++;
      }
    }
    return n;
  }

  /** Trainable, materialised parameter variables (for optimizers). */
  trainableVariables(): tf.Variable[] {
    return this.parameters()
      .filter((p) => p.trainable && p.isMaterialized)
      .map((p) => p.value);
  }

  /**
   * Runs `fn` in a tidy scope named after this module's checkpoint path. `fn` must be synchronous;
   * tensors it returns survive, everything else it creates is disposed.
   */
  protected scope<T extends tf.TensorContainer>(fn: () => T): T {
    this.assertNotDisposed();
    return tf.tidy(this.path || this.constructor.name, fn);
  }

  protected assertNotDisposed(): void {
    if (this._disposed) {
      throw new OwletError(
        ErrorCode.DISPOSED,
        `${this.constructor.name} ${this.path || ''} was used after dispose()`.replace('  ', ' '),
      );
    }
  }

  /** Frees every parameter value and any state the subclass owns (override `disposeOwn`). */
  dispose(): void {
    if (this._disposed) return;
    for (const p of this._params.values()) p.dispose();
    for (const c of this._children.values()) c.dispose();
    this.disposeOwn();
    this._disposed = true;
  }

  /** Subclasses free computed buffers (position tables, caches) here. */
  protected disposeOwn(): void {}

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** A list of modules registered under `0`, `1`, … (PyTorch's `nn.ModuleList`). */
export class ModuleList<M extends Module = Module> extends Module {
  private readonly items: M[] = [];

  constructor(items: Iterable<M> = []) {
    super();
    for (const m of items) this.push(m);
  }

  push(m: M): M {
    this.registerModule(String(this.items.length), m);
    this.items.push(m);
    return m;
  }

  get length(): number {
    return this.items.length;
  }

  at(i: number): M {
    const m = this.items[i];
    if (!m)
      throw new OwletError(ErrorCode.INVALID_ARGUMENT, `index ${i} out of range for a list of ${this.items.length}`);
    return m;
  }

  [Symbol.iterator](): Iterator<M> {
    return this.items[Symbol.iterator]();
  }

  protected override onChildReplaced(name: string, _old: Module, next: Module): void {
    this.items[Number(name)] = next as M;
  }
}
