/** The generation settings a model falls back on: its defaults, then `generation_config.json`. */
import type { GenerateOptions, LlamaConfig } from '@owlet/modality-adaptive-decoder';

/** Default generation settings read from `generation_config.json` (and the model's defaults). */
export interface GenerationDefaults {
  max_new_tokens: number;
  do_sample: boolean;
  temperature: number;
  top_k: number;
  top_p: number;
  repetition_penalty: number;
  eos_token_id: number | number[];
}

/** The defaults before `generation_config.json` is applied: greedy, 512 new tokens, the config's EOS. */
export function defaultGenerationDefaults(text: LlamaConfig): GenerationDefaults {
  return {
    max_new_tokens: 512,
    do_sample: false,
    temperature: 1,
    top_k: 50,
    top_p: 1,
    repetition_penalty: 1,
    eos_token_id: (text.eos_token_id as number | number[] | null) ?? 2,
  };
}

/** The request's settings, each missing one taken from the defaults. */
export function withGenerationDefaults(d: GenerationDefaults, o: Partial<GenerateOptions>): Partial<GenerateOptions> {
  return {
    max_new_tokens: o.max_new_tokens ?? d.max_new_tokens,
    do_sample: o.do_sample ?? d.do_sample,
    temperature: o.temperature ?? d.temperature,
    top_k: o.top_k ?? d.top_k,
    top_p: o.top_p ?? d.top_p,
    repetition_penalty: o.repetition_penalty ?? d.repetition_penalty,
    eos_token_id: o.eos_token_id === undefined ? d.eos_token_id : o.eos_token_id,
  };
}
