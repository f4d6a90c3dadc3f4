/**
 * The strict command-line parser every `owlet` command uses (and new commands should adopt):
 *
 * - `--name value` and `--name=value`; a value flag takes the next argument whatever it looks like,
 *   so `--max-new-tokens -1` reaches the number check (and gets a message saying what is valid)
 *   instead of "argument is ambiguous"; a value that starts with `--` must be written `--name=--x`;
 * - a single-valued flag given twice is an error (`--prompt a --prompt b` never silently keeps one);
 * - unknown flags, stray arguments, a value given to a boolean flag: one-line `UsageError`s (exit 2);
 * - numbers are decimal only: `0x10`, `" 5"`, `1e3`, `+5` and (for integer flags) `5.0` are refused.
 *
 * Node's `util.parseArgs` does none of the first three, which is why this exists.
 */
import { UsageError } from './errors.js';

export interface FlagSpec {
  type: 'string' | 'boolean';
  /** May be given several times (values collected in order). */
  multiple?: boolean;
  /** One-letter alias (`-h`). */
  short?: string;
}

export type FlagSpecs = Readonly<Record<string, FlagSpec>>;

type FlagValue<S extends FlagSpec> = S['type'] extends 'boolean'
  ? boolean
  : S['multiple'] extends true
    ? string[]
    : string;

export type FlagValues<T extends FlagSpecs> = { [K in keyof T]?: FlagValue<T[K]> };

export interface ParseFlagsOptions {
  /** The command, for messages (`run` → "see owlet run --help"). */
  command: string;
  /** How many positional arguments are allowed (default 0). */
  positionals?: number;
}

export interface ParsedFlags<T extends FlagSpecs> {
  values: FlagValues<T>;
  positionals: string[];
}

/** Parses `argv` against `specs`; throws a one-line `UsageError` for anything it does not accept. */
export function parseFlags<T extends FlagSpecs>(
  argv: readonly string[],
  specs: T,
  options: ParseFlagsOptions,
): ParsedFlags<T> {
  const hint = `see owlet ${options.command} --help`;
  const maxPositionals = options.positionals ?? 0;
  const values: Record<string, string | string[] | boolean> = Object.create(null);
  const positionals: string[] = [];
  const shorts = new Map<string, string>();
  for (const [name, spec] of Object.entries(specs)) if (spec.short) shorts.set(spec.short, name);

  const set = (name: string, spec: FlagSpec, value: string | boolean, shown: string) => {
    if (spec.type === 'boolean') {
      values[name] = true;
      return;
    }
    if (spec.multiple) {
      const list = (values[name] as string[] | undefined) ?? [];
      list.push(value as string);
      values[name] = list;
      return;
    }
    if (name in values) {
      throw new UsageError(`${shown} was given more than once; give it once`, hint);
    }
    values[name] = value as string;
  };

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg.startsWith('--') || (arg.startsWith('-') && arg.length > 1 && !/^-[0-9.]/.test(arg))) {
      const long = arg.startsWith('--');
      const eq = arg.indexOf('=');
      const rawName = long ? arg.slice(2, eq < 0 ? undefined : eq) : arg.slice(1, eq < 0 ? undefined : eq);
      const name = long ? rawName : shorts.get(rawName);
      const shown = long ? `--${rawName}` : `-${rawName}`;
      const spec = name === undefined ? undefined : specs[name];
      if (name === undefined || spec === undefined || (long && rawName.length === 0)) {
        throw new UsageError(`unknown option ${shown}`, hint);
      }
      if (spec.type === 'boolean') {
        if (eq >= 0) throw new UsageError(`${shown} takes no value, got ${JSON.stringify(arg.slice(eq + 1))}`, hint);
        set(name, spec, true, shown);
        continue;
      }
      let value: string;
      if (eq >= 0) {
        value = arg.slice(eq + 1);
      } else {
        const next = argv[i + 1];
        if (next === undefined) throw new UsageError(`${shown} needs a value`, hint);
        if (next.startsWith('--')) {
          throw new UsageError(
            `${shown} needs a value, got the option ${next} (write ${shown}=${next} for a value that starts with --)`,
            hint,
          );
        }
        value = next;
        i++;
      }
      set(name, spec, value, shown);
      continue;
    }
    positionals.push(arg);
  }
  if (positionals.length > maxPositionals) {
    const extra = positionals[maxPositionals] as string;
    throw new UsageError(
      maxPositionals === 0
        ? `unexpected argument ${JSON.stringify(extra)}`
        : `too many arguments: expected at most ${maxPositionals}, got ${positionals.length}`,
      hint,
    );
  }
  return { values: values as FlagValues<T>, positionals };
}

const DECIMAL_INTEGER = /^-?[0-9]+$/;
const DECIMAL_NUMBER = /^-?([0-9]+(\.[0-9]+)?|\.[0-9]+)([eE][-+]?[0-9]+)?$/;

/**
 * An integer flag: decimal digits only (optionally a leading `-`), a safe integer, ≥ `min`.
 * Undefined when the flag was not given.
 */
export function intFlag(
  name: string,
  v: string | undefined,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  if (v === undefined) return undefined;
  const n = DECIMAL_INTEGER.test(v) ? Number(v) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `in ${min}…${max}`;
    throw new UsageError(
      `--${name} must be a whole number ${range} written in decimal digits, got ${JSON.stringify(v)}`,
      `for example --${name} ${Math.max(min, 1)}`,
    );
  }
  return n;
}

/** A number flag: decimal notation only (no hex, no spaces, no Infinity/NaN), accepted by `ok`. */
export function numFlag(
  name: string,
  v: string | undefined,
  ok: (n: number) => boolean,
  expected: string,
): number | undefined {
  if (v === undefined) return undefined;
  const n = DECIMAL_NUMBER.test(v) ? Number(v) : Number.NaN;
  if (!Number.isFinite(n) || !ok(n)) throw new UsageError(`--${name} must be ${expected}, got ${JSON.stringify(v)}`);
  return n;
}
