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

/**
 * Upper bounds of config counts and sizes, checked before anything is built: a `config.json` that
 * asks for a million layers or a 2^40-wide model is refused in microseconds (`INVALID_CONFIG`)
 * instead of exhausting the heap. Each is far above the released models (LLaMA-2-7B, ViT-L/14).
 */
export const CONFIG_LIMITS: Readonly<Record<string, number>> = Object.freeze({
  num_hidden_layers: 1024,
  hidden_size: 131_072,
  intermediate_size: 524_288,
  projection_dim: 131_072,
  num_attention_heads: 4096,
  num_key_value_heads: 4096,
  vocab_size: 2_097_152,
  max_position_embeddings: 1_048_576,
  image_size: 8192,
  patch_size: 8192,
  /** Vision tokens per image, (image_size / patch_size)². */
  num_patches: 65_536,
  grid_size: 256,
  num_learnable_queries: 4096,
  language_hidden_size: 131_072,
});

/** Largest number of parameters a config may imply (2^37 ≈ 137 B; the released models have ≈ 8.2 B). */
export const MAX_CONFIG_PARAMETERS = 2 ** 37;

/**
 * Checks resolved config values against {@link CONFIG_LIMITS} (fields without a limit are ignored)
 * and, when given, the number of parameters they imply against {@link MAX_CONFIG_PARAMETERS}.
 * Throws `INVALID_CONFIG` naming the scope, the field, the limit and the value.
 */
export function checkConfigBounds(
  scope: string,
  values: Readonly<Record<string, number>>,
  impliedParameters?: number,
): void {
  for (const [field, value] of Object.entries(values)) {
    const limit = CONFIG_LIMITS[field];
    if (limit !== undefined && !(value <= limit)) {
      throw new OwletError(
        ErrorCode.INVALID_CONFIG,
        `${scope} config: ${field} must be at most ${limit}, got ${showConfigValue(value)}`,
        { details: { field, value, limit } },
      );
    }
  }
  if (impliedParameters !== undefined && !(impliedParameters <= MAX_CONFIG_PARAMETERS)) {
    throw new OwletError(
      ErrorCode.INVALID_CONFIG,
      `${scope} config implies about ${impliedParameters.toExponential(2)} parameters; the limit is ${MAX_CONFIG_PARAMETERS.toExponential(2)} (${Object.entries(
        values,
      )
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')})`,
      { details: { parameters: impliedParameters, limit: MAX_CONFIG_PARAMETERS } },
    );
  }
}
