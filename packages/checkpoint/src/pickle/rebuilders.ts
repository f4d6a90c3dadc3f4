/**
 * The table of globals the unpickler allows, and what calling each (REDUCE) builds. This is the whole
 * surface a `data.pkl` can reach: `collections.OrderedDict`, torch's tensor and parameter rebuilders
 * and the typed storage classes; any other global is PICKLE_FORBIDDEN where it is named.
 */
import type { SafetensorsDType } from '../dtypes.js';
import {
  PDict,
  PGlobal,
  PTensor,
  PTuple,
  describe,
  type PValue,
  type PickleFaults,
  type TorchStorageRef,
} from './values.js';

/** Builds the value `global(*args)` stands for, or throws through `faults`. */
export type Rebuilder = (args: readonly PValue[], fn: PGlobal, faults: PickleFaults) => PValue;

/** torch storage class name → safetensors dtype. */
export const TORCH_STORAGE_DTYPES: Readonly<Record<string, SafetensorsDType>> = Object.freeze(
  Object.assign(Object.create(null) as Record<string, SafetensorsDType>, {
    DoubleStorage: 'F64',
    FloatStorage: 'F32',
    HalfStorage: 'F16',
    BFloat16Storage: 'BF16',
    LongStorage: 'I64',
    IntStorage: 'I32',
    ShortStorage: 'I16',
    CharStorage: 'I8',
    ByteStorage: 'U8',
    BoolStorage: 'BOOL',
  }),
);

export function int(v: PValue, what: string, faults: PickleFaults): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v))
    throw faults.forbidden(`${what} must be an integer, got ${describe(v)}`);
  return v;
}

function intTuple(v: PValue, what: string, faults: PickleFaults): number[] {
  if (!(v instanceof PTuple)) throw faults.forbidden(`${what} must be a tuple, got ${describe(v)}`);
  return v.items.map((x) => int(x, what, faults));
}

function emptyHooks(v: PValue, faults: PickleFaults): void {
  if (v === null) return;
  if (!(v instanceof PDict) || v.map.size !== 0)
    throw faults.forbidden(`backward hooks must be an empty OrderedDict, got ${describe(v)}`);
}

/** `collections.OrderedDict()`: the state dict itself (and empty hook dicts). */
const orderedDict: Rebuilder = (a, _fn, faults) => {
  if (a.length !== 0) throw faults.forbidden('OrderedDict called with arguments');
  return new PDict(true);
};

/** `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`. */
const rebuildTensorV2: Rebuilder = (a, _fn, faults) => {
  if (a.length !== 6 && a.length !== 7) throw faults.forbidden(`_rebuild_tensor_v2 with ${a.length} arguments`);
  const storage = a[0];
  if (!storage || typeof storage !== 'object' || !('numel' in storage) || storage instanceof PTensor) {
    throw faults.forbidden(`_rebuild_tensor_v2 needs a storage, got ${describe(storage)}`);
  }
  const offset = int(a[1] ?? null, 'storage offset', faults);
  const shape = intTuple(a[2] ?? null, 'size', faults);
  const stride = intTuple(a[3] ?? null, 'stride', faults);
  if (typeof a[4] !== 'boolean') throw faults.forbidden(`requires_grad must be a bool, got ${describe(a[4])}`);
  emptyHooks(a[5] ?? null, faults);
  if (a.length === 7 && a[6] !== null && !(a[6] instanceof PDict))
    throw faults.forbidden(`tensor metadata ${describe(a[6])}`);
  return new PTensor(storage as TorchStorageRef, offset, shape, stride, a[4]);
};

/**
 * `torch._utils._rebuild_parameter(tensor, requires_grad, hooks)` and
 * `_rebuild_parameter_with_state(tensor, requires_grad, hooks, state)`.
 */
function rebuildParameter(arity: 3 | 4): Rebuilder {
  return (a, fn, faults) => {
    if (a.length !== arity) throw faults.forbidden(`${fn.qualified} with ${a.length} arguments`);
    const t = a[0];
    if (!(t instanceof PTensor)) throw faults.forbidden(`${fn.qualified} needs a tensor, got ${describe(t)}`);
    if (typeof a[1] !== 'boolean') throw faults.forbidden(`requires_grad must be a bool, got ${describe(a[1])}`);
    emptyHooks(a[2] ?? null, faults);
    if (arity === 4 && a[3] !== null && !(a[3] instanceof PDict))
      throw faults.forbidden(`parameter state ${describe(a[3])}`);
    const p = new PTensor(t.storage, t.offset, t.shape, t.stride, a[1]);
    p.isParameter = true;
    return p;
  };
}

/** module → name → rebuilder: the callable globals. */
export const REBUILDERS: Readonly<Record<string, Readonly<Record<string, Rebuilder>>>> = Object.freeze(
  Object.assign(Object.create(null) as Record<string, Record<string, Rebuilder>>, {
    collections: Object.assign(Object.create(null) as Record<string, Rebuilder>, { OrderedDict: orderedDict }),
    'torch._utils': Object.assign(Object.create(null) as Record<string, Rebuilder>, {
      _rebuild_tensor_v2: rebuildTensorV2,
      _rebuild_parameter: rebuildParameter(3),
      _rebuild_parameter_with_state: rebuildParameter(4),
    }),
  }),
);

/** The global `module.name` if the table allows it: a rebuilder or a `torch.<Type>Storage` class. */
export function resolveGlobal(module: string, name: string): PGlobal | undefined {
  const q = `${module}.${name}`;
  const table = Object.hasOwn(REBUILDERS, module) ? REBUILDERS[module] : undefined;
  const rebuild = table && Object.hasOwn(table, name) ? table[name] : undefined;
  if (rebuild) return new PGlobal(q, rebuild);
  if (module === 'torch' && Object.hasOwn(TORCH_STORAGE_DTYPES, name)) {
    return new PGlobal(q, null, TORCH_STORAGE_DTYPES[name]);
  }
  return undefined;
}
