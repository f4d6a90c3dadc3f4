/**
 * The values the restricted unpickler puts on its stack: Python tuples, lists and dicts, the allowed
 * globals, storages and tensors. Nothing here is a Python object: each is a plain record the opcode
 * loop (`machine.ts`) and the rebuilders (`rebuilders.ts`) interpret.
 */
import type { SafetensorsDType } from '../dtypes.js';
import type { Rebuilder } from './rebuilders.js';

/** A storage referenced by a persistent id: the zip member `<archive>/data/<key>`. */
export interface TorchStorageRef {
  key: string;
  dtype: SafetensorsDType;
  /** Number of elements of the storage. */
  numel: number;
  location: string;
}

/** One tensor of the state dict, as a strided view of a storage. */
export interface TorchTensorRef {
  key: string;
  dtype: SafetensorsDType;
  shape: number[];
  stride: number[];
  /** Offset in elements into the storage. */
  storageOffset: number;
  storage: TorchStorageRef;
  requiresGrad: boolean;
  isParameter: boolean;
}

export class Mark {}
export const MARK = new Mark();
export class PTuple {
  constructor(readonly items: readonly PValue[]) {}
}
export class PList {
  readonly items: PValue[] = [];
}
export class PDict {
  readonly map = new Map<string | number | boolean | null, PValue>();
  attrs: PDict | null = null;
  constructor(readonly ordered: boolean) {}
}
/**
 * An allowed global: a function the unpickler interprets itself (`rebuild`), or a torch storage class
 * (`dtype`), which only names the dtype of a persistent id and cannot be called.
 */
export class PGlobal {
  constructor(
    readonly qualified: string,
    readonly rebuild: Rebuilder | null,
    readonly dtype?: SafetensorsDType,
  ) {}
}
export class PTensor {
  isParameter = false;
  constructor(
    readonly storage: TorchStorageRef,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
    public requiresGrad: boolean,
  ) {}
}
export type PValue = null | boolean | number | string | PTuple | PList | PDict | PGlobal | TorchStorageRef | PTensor;

/** A value as error messages name it. */
export function describe(v: PValue | Mark | undefined): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'None';
  if (v instanceof Mark) return 'MARK';
  if (v instanceof PTuple) return `tuple of ${v.items.length}`;
  if (v instanceof PList) return 'list';
  if (v instanceof PDict) return v.ordered ? 'OrderedDict' : 'dict';
  if (v instanceof PGlobal) return v.qualified;
  if (v instanceof PTensor) return 'tensor';
  if (typeof v === 'object') return 'storage';
  return typeof v === 'string' ? `str ${JSON.stringify(v.slice(0, 40))}` : `${typeof v} ${String(v)}`;
}

/** The two errors of the pickle machine, bound to the file and the opcode's offset. */
export interface PickleFaults {
  /** PICKLE_FORBIDDEN: outside what torch.save writes for a state dict. */
  forbidden(msg: string): Error;
  /** PICKLE_INVALID: a malformed stream. */
  invalid(msg: string): Error;
}
