/** The inputs and outputs of the assembled models' `forward` and `generate`, and their checks. */
import type * as tf from '@tensorflow/tfjs-core';
import { ErrorCode, OwletError } from '@owlet/core';
import { checkContextWindow, type GenerateOptions } from '@owlet/modality-adaptive-decoder';

import type { MplugOwlModelConfig } from './config.js';
import { splicedLength } from './splice.js';

export interface MplugOwlForwardInputs {
  /** Prompt ids, one row (batch 1): −200 per image (v2), or runs of −1 (v1). */
  input_ids: readonly number[] | readonly (readonly number[])[];
  /** [N, 3, S, S] preprocessed images, one per image slot; omit for text-only prompts. */
  pixel_values?: tf.Tensor | null;
  /** Must be all ones (batch 1, no padding), as the official inference. */
  attention_mask?: readonly number[] | readonly (readonly number[])[] | null;
  output_hidden_states?: boolean;
}

export interface MplugOwlForwardOutput {
  /** [1, L', vocab] over the spliced sequence. */
  logits: tf.Tensor;
  /** [1, L', D] after the final norm. */
  last_hidden_state: tf.Tensor;
  hidden_states?: tf.Tensor[];
}

export interface MplugOwlGenerateOptions
  extends Omit<
    GenerateOptions,
    'input_ids' | 'inputs_embeds' | 'modality_indicators' | 'position_ids' | 'attention_mask' | 'streamer'
  > {
  input_ids: readonly number[] | readonly (readonly number[])[];
  pixel_values?: tf.Tensor | null;
  attention_mask?: readonly number[] | readonly (readonly number[])[] | null;
  /** HF `stop` alias of stop_strings. */
  stop?: readonly string[];
  /** Receives new token ids as they are chosen (a TextStreamer or a function). */
  streamer?: GenerateOptions['streamer'];
}

/** The one row of a batch-1 input (a flat row is taken as is). */
export function firstRow(ids: readonly number[] | readonly (readonly number[])[]): number[] {
  if (ids.length > 0 && Array.isArray(ids[0])) {
    if (ids.length !== 1) {
      throw new OwletError(
        ErrorCode.INVALID_ARGUMENT,
        `batch size ${ids.length} is not supported; the official inference is batch 1 (left padding is wrong there)`,
      );
    }
    return [...(ids[0] as readonly number[])];
  }
  return [...(ids as readonly number[])];
}

/** Refuses an attention mask that is not `length` ones (batch 1, no padding). */
export function checkAllOnesMask(mask: MplugOwlForwardInputs['attention_mask'], length: number): void {
  if (!mask) return;
  const row = firstRow(mask);
  if (row.length !== length || row.some((m) => m !== 1)) {
    throw new OwletError(
      ErrorCode.INVALID_ARGUMENT,
      `attention_mask must be ${length} ones (batch 1, no padding), got ${row.length} values with ${row.filter((m) => m !== 1).length} not 1`,
    );
  }
}

/** Refuses (CONTEXT_WINDOW_EXCEEDED) a prompt whose spliced length leaves no room for an answer. */
export function checkPromptFits(config: MplugOwlModelConfig, ids: readonly number[]): void {
  const spliced = splicedLength(ids, config.image_tokens, config.model_type === 'mplug_owl2');
  checkContextWindow(config.text_config, spliced);
}
