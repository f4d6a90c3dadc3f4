/**
 * Typed readers for `config.json` fields, shared by every package's `resolve…Config`: a missing or
 * null field takes the fallback (the released model's value); a present one must be valid, else an
 * `OwletError('INVALID_CONFIG')` names the config, the field, what was expected and what was found.
 */
import { ErrorCode, OwletError } from './errors.js';

export type ConfigJson = Record<string, unknown>;

export const isConfigObject = (v: unknown): v is ConfigJson => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A config value as error messages print it. */
export function showConfigValue(v: unknown): string {
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
  return JSON.stringify(v) ?? String(v);
}

export interface ConfigFieldReaders {
  /** Throws INVALID_CONFIG: "`<scope>` config: `<field>` must be `<expected>`, got `<value>`". */
  fail(field: string, value: unknown, expected: string): never;
  posInt(src: ConfigJson, field: string, fallback: number, label?: string): number;
  positiveNumber(src: ConfigJson, field: string, fallback: number, label?: string): number;
  bool(src: ConfigJson, field: string, fallback: boolean, label?: string): boolean;
}

/** Field readers whose errors name `scope` ("vision", "llama", "visual abstractor", …). */
export function configFields(scope: string): ConfigFieldReaders {
  const fail = (field: string, value: unknown, expected: string): never => {
    throw new OwletError(
      ErrorCode.INVALID_CONFIG,
      `${scope} config: ${field} must be ${expected}, got ${showConfigValue(value)}`,
      {
        details: { field, value },
      },
    );
  };
  function read<T>(
    src: ConfigJson,
    field: string,
    fallback: T,
    ok: (v: unknown) => v is T,
    expected: string,
    label: string,
  ): T {
    const v = src[field];
    if (v === undefined || v === null) return fallback;
    if (!ok(v)) return fail(label, v, expected);
    return v;
  }
  const isPosInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 1;
  const isPosNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v > 0;
  const isBool = (v: unknown): v is boolean => typeof v === 'boolean';
  return {
    fail,
    posInt: (src, field, fallback, label = field) =>
      read<number>(src, field, fallback, isPosInt, 'a positive integer', label),
    positiveNumber: (src, field, fallback, label = field) =>
      read<number>(src, field, fallback, isPosNumber, 'a finite number > 0', label),
    bool: (src, field, fallback, label = field) => read<boolean>(src, field, fallback, isBool, 'a boolean', label),
  };
}
