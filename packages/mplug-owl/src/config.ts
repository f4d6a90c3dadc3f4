/**
 * The assembled models' configuration, read from a checkpoint's `config.json`:
 * - mPLUG-Owl2: `model_type` `mplug_owl2`, LLaMA fields at the top level, the towers under
 *   `visual_config.visual_model` / `visual_config.visual_abstractor`;
 * - mPLUG-Owl v1: `model_type` `mplug-owl`, `vision_config`, `visual_abstractor_config`,
 *   `text_config`, `num_query_tokens`.
 * Each part is resolved by its own package (defaults of the released models, validation, frozen).
 */
import { ErrorCode, OwletError } from '@owlet/core';
import { resolveLlamaConfig, type LlamaConfig } from '@owlet/modality-adaptive-decoder';
import { resolveMplugOwlVisionConfig, type MplugOwlVisionConfig } from '@owlet/vision-encoder';
import { resolveMplugOwlVisualAbstractorConfig, type MplugOwlVisualAbstractorConfig } from '@owlet/visual-abstractor';

export type MplugOwlModelType = 'mplug_owl2' | 'mplug-owl';

export interface MplugOwlModelConfig {
  readonly model_type: MplugOwlModelType;
  readonly text_config: LlamaConfig;
  readonly vision_config: MplugOwlVisionConfig;
  readonly abstractor_config: MplugOwlVisualAbstractorConfig;
  /** Visual tokens per image in the LLM sequence: queries + vit_eos (65 for the released models). */
  readonly image_tokens: number;
  /** The parsed config.json as given. */
  readonly raw: Readonly<Record<string, unknown>>;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Which model a parsed config.json describes. */
export function detectModelType(json: unknown): MplugOwlModelType {
  if (!isObject(json)) {
    throw new OwletError(ErrorCode.INVALID_CONFIG, `config.json must be an object, got ${JSON.stringify(json)}`);
  }
  const t = json.model_type;
  if (t === 'mplug_owl2') return 'mplug_owl2';
  if (t === 'mplug-owl' || t === 'mplug_owl') return 'mplug-owl';
  if (t === 'mplug_owl2_1') {
    throw new OwletError(
      'UNSUPPORTED_MODEL',
      'config.json is mPLUG-Owl2.1 (model_type "mplug_owl2_1": Qwen-7B + ViT-G), which owlet does not support; expected "mplug_owl2" or "mplug-owl"',
    );
  }
  throw new OwletError(
    ErrorCode.INVALID_CONFIG,
    `config.json model_type must be "mplug_owl2" (mPLUG-Owl2) or "mplug-owl" (mPLUG-Owl), got ${JSON.stringify(t)}`,
    { details: { field: 'model_type', value: t } },
  );
}

/** Resolves a full config.json of either model. */
export function resolveMplugOwlModelConfig(json: unknown): MplugOwlModelConfig {
  const model_type = detectModelType(json);
  const raw = Object.freeze({ ...(json as Record<string, unknown>) });
  const text_config = resolveLlamaConfig(json);
  const vision_config = resolveMplugOwlVisionConfig(json);
  const abstractor_config = resolveMplugOwlVisualAbstractorConfig(json);
  if (abstractor_config.encoder_hidden_size !== vision_config.hidden_size) {
    throw new OwletError(
      ErrorCode.INVALID_CONFIG,
      `the abstractor reads vision tokens of width ${abstractor_config.encoder_hidden_size}, the vision model makes ${vision_config.hidden_size}`,
    );
  }
  if (abstractor_config.language_hidden_size !== text_config.hidden_size) {
    throw new OwletError(
      ErrorCode.INVALID_CONFIG,
      `the abstractor outputs width ${abstractor_config.language_hidden_size}, the language model has hidden_size ${text_config.hidden_size}`,
    );
  }
  return Object.freeze({
    model_type,
    text_config,
    vision_config,
    abstractor_config,
    image_tokens: abstractor_config.num_learnable_queries + 1,
    raw,
  });
}
