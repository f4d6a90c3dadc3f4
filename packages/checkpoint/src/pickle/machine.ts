/**
 * A restricted unpickler for the `data.pkl` that `torch.save(state_dict)` writes. It is an
 * interpreter for a small subset of the pickle machine, not a general one: it knows the opcodes of
 * protocol 2 that torch emits (plus the few protocol-4 framing/memo opcodes), and the closed table of
 * globals in `rebuilders.ts` — `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
 * `_rebuild_parameter`, `_rebuild_parameter_with_state` and the typed storage classes
 * (`torch.FloatStorage`, …) — which it interprets itself. Nothing named by the file is ever imported,
 * looked up or executed: any other opcode or global is a PICKLE_FORBIDDEN error; a malformed stream
 * is PICKLE_INVALID. This file is the opcode loop; `state-dict.ts` turns the result into tensor views.
 */
import { CheckpointError, CheckpointErrorCode } from '../errors.js';
import { int, resolveGlobal } from './rebuilders.js';
import { stateDictTensors } from './state-dict.js';
import {
  MARK,
  Mark,
  PDict,
  PGlobal,
  PList,
  PTuple,
  describe,
  type PValue,
  type PickleFaults,
  type TorchStorageRef,
  type TorchTensorRef,
} from './values.js';

const OPNAMES: Record<number, string> = {
  0x28: 'MARK',
  0x2e: 'STOP',
  0x30: 'POP',
  0x31: 'POP_MARK',
  0x32: 'DUP',
  0x46: 'FLOAT',
  0x49: 'INT',
  0x4a: 'BININT',
  0x4b: 'BININT1',
  0x4c: 'LONG',
  0x4d: 'BININT2',
  0x4e: 'NONE',
  0x50: 'PERSID',
  0x51: 'BINPERSID',
  0x52: 'REDUCE',
  0x53: 'STRING',
  0x54: 'BINSTRING',
  0x55: 'SHORT_BINSTRING',
  0x56: 'UNICODE',
  0x58: 'BINUNICODE',
  0x61: 'APPEND',
  0x62: 'BUILD',
  0x63: 'GLOBAL',
  0x64: 'DICT',
  0x7d: 'EMPTY_DICT',
  0x65: 'APPENDS',
  0x67: 'GET',
  0x68: 'BINGET',
  0x69: 'INST',
  0x6a: 'LONG_BINGET',
  0x6c: 'LIST',
  0x5d: 'EMPTY_LIST',
  0x6f: 'OBJ',
  0x70: 'PUT',
  0x71: 'BINPUT',
  0x72: 'LONG_BINPUT',
  0x73: 'SETITEM',
  0x74: 'TUPLE',
  0x29: 'EMPTY_TUPLE',
  0x75: 'SETITEMS',
  0x47: 'BINFLOAT',
  0x80: 'PROTO',
  0x81: 'NEWOBJ',
  0x82: 'EXT1',
  0x83: 'EXT2',
  0x84: 'EXT4',
  0x85: 'TUPLE1',
  0x86: 'TUPLE2',
  0x87: 'TUPLE3',
  0x88: 'NEWTRUE',
  0x89: 'NEWFALSE',
  0x8a: 'LONG1',
  0x8b: 'LONG4',
  0x8c: 'SHORT_BINUNICODE',
  0x8d: 'BINUNICODE8',
  0x8e: 'BINBYTES8',
  0x8f: 'EMPTY_SET',
  0x90: 'ADDITEMS',
  0x91: 'FROZENSET',
  0x92: 'NEWOBJ_EX',
  0x93: 'STACK_GLOBAL',
  0x94: 'MEMOIZE',
  0x95: 'FRAME',
  0x96: 'BYTEARRAY8',
  0x97: 'NEXT_BUFFER',
  0x98: 'READONLY_BUFFER',
  0x42: 'BINBYTES',
  0x43: 'SHORT_BINBYTES',
};

/** Largest data.pkl accepted (a 7B model's state dict pickle is ~100 KB). */
export const MAX_PICKLE_BYTES = 64 * 1024 * 1024;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Interprets a torch.save `data.pkl` and returns the state dict's tensors in file order. `file`
 * names the source in errors.
 */
export function unpickleStateDict(data: Uint8Array, file: string): TorchTensorRef[] {
  const forbidden = (msg: string, at: number) =>
    new CheckpointError(
      CheckpointErrorCode.PICKLE_FORBIDDEN,
      `${file}: ${msg} (pickle offset ${at}); only torch state dicts are read`,
      {
        details: { file, offset: at },
      },
    );
  const invalid = (msg: string, at: number) =>
    new CheckpointError(CheckpointErrorCode.PICKLE_INVALID, `${file}: ${msg} (pickle offset ${at})`, {
      details: { file, offset: at },
    });
  /** The errors bound to the opcode at `at`, for the rebuilders. */
  const faultsAt = (at: number): PickleFaults => ({
    forbidden: (msg) => forbidden(msg, at),
    invalid: (msg) => invalid(msg, at),
  });

  if (data.byteLength > MAX_PICKLE_BYTES)
    throw invalid(`pickle of ${data.byteLength} bytes exceeds ${MAX_PICKLE_BYTES}`, 0);
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const n = data.byteLength;
  let i = 0;
  const stack: (PValue | Mark)[] = [];
  const marks: number[] = [];
  const memo = new Map<number, PValue>();
  const storages = new Map<string, TorchStorageRef>();

  const need = (k: number, at: number) => {
    if (i + k > n) throw invalid('truncated pickle', at);
  };
  /** The byte at offset `k` (the opcode's need() checked the length; a short read is still typed). */
  const byteAt = (k: number, at: number): number => {
    const b = data[k];
    if (b === undefined) throw invalid('truncated pickle', at);
    return b;
  };
  const pop = (at: number): PValue => {
    const v = stack.pop();
    if (v === undefined) throw invalid('stack underflow', at);
    if (v instanceof Mark) throw invalid('unexpected MARK on the stack', at);
    return v;
  };
  const top = (at: number): PValue => {
    const v = stack[stack.length - 1];
    if (v === undefined) throw invalid('stack underflow', at);
    if (v instanceof Mark) throw invalid('unexpected MARK on the stack', at);
    return v;
  };
  const popMark = (at: number): PValue[] => {
    const m = marks.pop();
    if (m === undefined) throw invalid('no MARK to pop to', at);
    const items = stack.splice(m) as (PValue | Mark)[];
    items.shift(); // the MARK itself
    for (const it of items) if (it instanceof Mark) throw invalid('nested MARK', at);
    return items as PValue[];
  };
  const readString = (len: number, at: number): string => {
    need(len, at);
    const bytes = data.subarray(i, i + len);
    i += len;
    try {
      return utf8.decode(bytes);
    } catch {
      throw invalid('string is not valid UTF-8', at);
    }
  };
  const line = (at: number): string => {
    const end = data.indexOf(0x0a, i);
    if (end < 0 || end - i > 256) throw invalid('unterminated GLOBAL name', at);
    const s = readString(end - i, at);
    i = end + 1;
    return s;
  };
  const pushGlobal = (module: string, name: string, at: number) => {
    const g = resolveGlobal(module, name);
    if (!g) throw forbidden(`global ${module}.${name} is not allowed`, at);
    stack.push(g);
  };
  const memoPut = (idx: number, at: number) => {
    const v = top(at);
    memo.set(idx, v);
  };
  const memoGet = (idx: number, at: number) => {
    const v = memo.get(idx);
    if (v === undefined) throw invalid(`memo index ${idx} was never stored`, at);
    stack.push(v);
  };
  const dictKey = (k: PValue, at: number): string | number | boolean | null => {
    if (k === null || typeof k === 'string' || typeof k === 'number' || typeof k === 'boolean') return k;
    throw forbidden(`dict key of type ${describe(k)}`, at);
  };
  const setItems = (d: PValue, kv: PValue[], at: number) => {
    if (!(d instanceof PDict)) throw forbidden(`SETITEM(S) on ${describe(d)}`, at);
    if (kv.length % 2 !== 0) throw invalid('SETITEMS with an odd number of items', at);
    for (let k = 0; k < kv.length; k += 2) d.map.set(dictKey(kv[k] ?? null, at), kv[k + 1] ?? null);
  };
  /** REDUCE: call an allowed global through its rebuilder. */
  const reduce = (fn: PValue, args: PValue, at: number): PValue => {
    if (!(fn instanceof PGlobal)) throw forbidden(`REDUCE on ${describe(fn)}`, at);
    if (!(args instanceof PTuple)) throw invalid(`REDUCE arguments must be a tuple, got ${describe(args)}`, at);
    if (fn.rebuild === null) throw forbidden(`calling ${fn.qualified}`, at);
    return fn.rebuild(args.items, fn, faultsAt(at));
  };

  const persistentLoad = (pid: PValue, at: number): TorchStorageRef => {
    if (!(pid instanceof PTuple) || pid.items.length !== 5 || pid.items[0] !== 'storage') {
      throw forbidden(`persistent id ${describe(pid)} is not a ('storage', type, key, location, numel) tuple`, at);
    }
    const [, type, key, location, numel] = pid.items;
    if (!(type instanceof PGlobal) || type.rebuild !== null || !type.dtype) {
      throw forbidden(`storage type ${describe(type ?? null)}`, at);
    }
    if (typeof key !== 'string' || !/^[0-9A-Za-z_]{1,64}$/.test(key))
      throw forbidden(`storage key ${describe(key ?? null)}`, at);
    if (typeof location !== 'string') throw forbidden(`storage location ${describe(location ?? null)}`, at);
    const count = int(numel ?? null, 'storage numel', faultsAt(at));
    if (count < 0) throw invalid(`negative storage size ${count}`, at);
    const prev = storages.get(key);
    if (prev) {
      if (prev.dtype !== type.dtype || prev.numel !== count) {
        throw invalid(`storage ${key} is referenced as ${prev.dtype}×${prev.numel} and as ${type.dtype}×${count}`, at);
      }
      return prev;
    }
    const ref: TorchStorageRef = { key, dtype: type.dtype, numel: count, location };
    storages.set(key, ref);
    return ref;
  };

  let result: PValue | undefined;
  while (result === undefined) {
    if (i >= n) throw invalid('pickle ends without STOP', i);
    const at = i;
    const op = byteAt(i++, at);
    switch (op) {
      case 0x80: // PROTO
        need(1, at);
        if (byteAt(i, at) < 2 || byteAt(i, at) > 5) throw forbidden(`pickle protocol ${data[i]}`, at);
        i += 1;
        break;
      case 0x95: // FRAME
        need(8, at);
        i += 8;
        break;
      case 0x2e: // STOP
        result = pop(at);
        break;
      case 0x28: // MARK
        marks.push(stack.length);
        stack.push(MARK);
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new PDict(false));
        break;
      case 0x5d: // EMPTY_LIST
        stack.push(new PList());
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push(new PTuple([]));
        break;
      case 0x74: // TUPLE
        stack.push(new PTuple(popMark(at)));
        break;
      case 0x85: // TUPLE1
        stack.push(new PTuple([pop(at)]));
        break;
      case 0x86: {
        const b = pop(at);
        const a = pop(at);
        stack.push(new PTuple([a, b]));
        break;
      }
      case 0x87: {
        const c = pop(at);
        const b = pop(at);
        const a = pop(at);
        stack.push(new PTuple([a, b, c]));
        break;
      }
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88:
        stack.push(true);
        break;
      case 0x89:
        stack.push(false);
        break;
      case 0x4a: // BININT
        need(4, at);
        stack.push(dv.getInt32(i, true));
        i += 4;
        break;
      case 0x4b: // BININT1
        need(1, at);
        stack.push(byteAt(i, at));
        i += 1;
        break;
      case 0x4d: // BININT2
        need(2, at);
        stack.push(dv.getUint16(i, true));
        i += 2;
        break;
      case 0x8a: {
        // LONG1: n-byte two's complement little-endian
        need(1, at);
        const len = byteAt(i, at);
        i += 1;
        if (len > 8) throw forbidden(`LONG1 of ${len} bytes`, at);
        need(len, at);
        let v = 0n;
        for (let k = len - 1; k >= 0; k--) v = (v << 8n) | BigInt(byteAt(i + k, at));
        if (len > 0 && byteAt(i + len - 1, at) & 0x80) v -= 1n << BigInt(8 * len);
        i += len;
        if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER))
          throw forbidden(`integer ${v} beyond 2^53`, at);
        stack.push(Number(v));
        break;
      }
      case 0x47: // BINFLOAT (big-endian)
        need(8, at);
        stack.push(dv.getFloat64(i, false));
        i += 8;
        break;
      case 0x58: {
        // BINUNICODE
        need(4, at);
        const len = dv.getUint32(i, true);
        i += 4;
        stack.push(readString(len, at));
        break;
      }
      case 0x8c: {
        // SHORT_BINUNICODE
        need(1, at);
        const len = byteAt(i, at);
        i += 1;
        stack.push(readString(len, at));
        break;
      }
      case 0x71: // BINPUT
        need(1, at);
        memoPut(byteAt(i, at), at);
        i += 1;
        break;
      case 0x72: // LONG_BINPUT
        need(4, at);
        memoPut(dv.getUint32(i, true), at);
        i += 4;
        break;
      case 0x94: // MEMOIZE
        memoPut(memo.size, at);
        break;
      case 0x68: // BINGET
        need(1, at);
        memoGet(byteAt(i, at), at);
        i += 1;
        break;
      case 0x6a: // LONG_BINGET
        need(4, at);
        memoGet(dv.getUint32(i, true), at);
        i += 4;
        break;
      case 0x63: {
        // GLOBAL
        const module = line(at);
        const name = line(at);
        pushGlobal(module, name, at);
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop(at);
        const module = pop(at);
        if (typeof module !== 'string' || typeof name !== 'string') throw invalid('STACK_GLOBAL needs two strings', at);
        pushGlobal(module, name, at);
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop(at);
        const fn = pop(at);
        stack.push(reduce(fn, args, at));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop(at);
        const obj = top(at);
        if (!(obj instanceof PDict) || !obj.ordered) throw forbidden(`BUILD on ${describe(obj)}`, at);
        if (state !== null && !(state instanceof PDict)) throw forbidden(`BUILD state ${describe(state)}`, at);
        obj.attrs = state; // e.g. the state dict's `_metadata` attribute; not used
        break;
      }
      case 0x51: // BINPERSID
        stack.push(persistentLoad(pop(at), at));
        break;
      case 0x73: {
        // SETITEM
        const v = pop(at);
        const k = pop(at);
        setItems(top(at), [k, v], at);
        break;
      }
      case 0x75: {
        // SETITEMS
        const kv = popMark(at);
        setItems(top(at), kv, at);
        break;
      }
      case 0x61: {
        // APPEND
        const v = pop(at);
        const l = top(at);
        if (!(l instanceof PList)) throw forbidden(`APPEND on ${describe(l)}`, at);
        l.items.push(v);
        break;
      }
      case 0x65: {
        // APPENDS
        const vs = popMark(at);
        const l = top(at);
        if (!(l instanceof PList)) throw forbidden(`APPENDS on ${describe(l)}`, at);
        l.items.push(...vs);
        break;
      }
      default:
        throw forbidden(`opcode ${OPNAMES[op] ?? `0x${op.toString(16).padStart(2, '0')}`}`, at);
    }
  }
  if (stack.length !== 0) throw invalid(`${stack.length} values left on the stack after STOP`, i);
  if (!(result instanceof PDict)) throw forbidden(`the pickle holds a ${describe(result)}, not a state dict`, 0);

  return stateDictTensors(result, file, forbidden);
}
