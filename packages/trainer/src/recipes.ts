/**
 * The mPLUG-Owl training recipes as data: which checkpoint keys train, the LoRA (if any), and the
 * optimizer settings, each with its source. Section numbers refer to the project's
 * owl-architecture.md (mPLUG-Owl2 §A.11, mPLUG-Owl §B.7), which cites the papers and the official
 * repository (X-PLUG/mPLUG-Owl@0f3068f).
 *
 * Patterns are regular expressions over the full checkpoint key (see `keyMatcher`).
 */
import { type LoraConfig, OwletError } from '@owlet/core';

import type { TrainingArguments } from './args.js';
import { TrainerErrorCode } from './errors.js';

export interface Recipe {
  name: string;
  description: string;
  /** Where the settings come from. */
  source: string;
  /** The `model_type` of config.json the recipe is for. */
  model_type: 'mplug_owl2' | 'mplug-owl';
  /** Keys that train (every other parameter is frozen). */
  trainable: readonly string[];
  /** Keys frozen even when `trainable` matches them. */
  frozen: readonly string[];
  lora: LoraConfig | null;
  args: Partial<TrainingArguments>;
  /** Settings the sources leave open, and what owlet chose. */
  notes: readonly string[];
}

export interface RecipeOptions {
  /** mplug_owl2_stage2: freeze the ViT, as the repository's finetune.sh (`--freeze_vision_model True`). */
  freeze_vision_model?: boolean;
}

const OWL2_VISION = '^model\\.vision_model\\..*';
const OWL2_ABSTRACTOR = '^model\\.visual_abstractor\\..*';
/** The visual branch of the modality-adaptive module: multiway copy 1 of both RMSNorms and of k/v. */
const OWL2_MAM_VISUAL = [
  '^model\\.layers\\.\\d+\\.(input_layernorm|post_attention_layernorm)\\.multiway\\.1\\.weight',
  '^model\\.layers\\.\\d+\\.self_attn\\.(k_proj|v_proj)\\.multiway\\.1\\.weight',
];

const PAPER_OWL2_OPTIM = {
  adam_beta1: 0.9,
  adam_beta2: 0.98,
  adam_epsilon: 1e-6,
  lr_scheduler_type: 'cosine',
} as const;

export const RECIPES = Object.freeze({
  mplug_owl2_stage1: Object.freeze<Recipe>({
    name: 'mplug_owl2_stage1',
    description:
      'mPLUG-Owl2 pre-training: vision encoder, visual abstractor and the visual branch of the modality-adaptive module train; the LLM is frozen',
    source:
      'owl-architecture.md §A.11 (paper 2311.04257, Training Settings, stage 1): AdamW β (0.9, 0.98), ε 1e-6, cosine, peak lr 1e-4, 1k warmup, layer-wise lr decay 0.9 on the ViT',
    model_type: 'mplug_owl2',
    trainable: [OWL2_VISION, OWL2_ABSTRACTOR, ...OWL2_MAM_VISUAL],
    frozen: [],
    lora: null,
    args: {
      ...PAPER_OWL2_OPTIM,
      learning_rate: 1e-4,
      warmup_steps: 1000,
      weight_decay: 0.05,
      layerwise_lr_decay: { rate: 0.9, prefix: 'model.vision_model' },
    },
    notes: [
      'weight_decay 0.05 is not given in owl-architecture.md (unconfirmed); 42,500 iterations at batch 8,192 in the paper: set max_steps and per_device_train_batch_size yourself',
    ],
  }),
  mplug_owl2_stage2: Object.freeze<Recipe>({
    name: 'mplug_owl2_stage2',
    description:
      'mPLUG-Owl2 joint instruction tuning: the whole model trains (the ViT with layer-wise lr decay); recipe_options.freeze_vision_model gives the repository finetune.sh variant',
    source:
      'owl-architecture.md §A.11 (paper stage 2: whole model, lr 2e-5, 1 epoch, layer-wise decay on the ViT; repo scripts/finetune.sh: --freeze_vision_model True)',
    model_type: 'mplug_owl2',
    trainable: ['.*'],
    frozen: [],
    lora: null,
    args: {
      ...PAPER_OWL2_OPTIM,
      learning_rate: 2e-5,
      num_train_epochs: 1,
      weight_decay: 0.05,
      layerwise_lr_decay: { rate: 0.9, prefix: 'model.vision_model' },
    },
    notes: ['stage-2 warmup and weight decay are not given in owl-architecture.md (unconfirmed)'],
  }),
  mplug_owl2_finetune_lora: Object.freeze<Recipe>({
    name: 'mplug_owl2_finetune_lora',
    description:
      'mPLUG-Owl2 LoRA fine-tuning as the repository: LoRA on every Linear outside the vision encoder and abstractor, except lm_head (both multiway k/v copies included)',
    source:
      'owl-architecture.md §A.11 (repo scripts/finetune_lora.sh: r 128, α 256, dropout 0.05, lr 1e-4, cosine, warmup ratio 0.03, weight decay 0)',
    model_type: 'mplug_owl2',
    trainable: [],
    frozen: [],
    lora: {
      r: 128,
      lora_alpha: 256,
      lora_dropout: 0.05,
      target_modules:
        '^model\\.layers\\.\\d+\\.(self_attn\\.(q_proj|o_proj|(k_proj|v_proj)\\.multiway\\.\\d+)|mlp\\.(gate_proj|up_proj|down_proj))',
    },
    args: { learning_rate: 1e-4, lr_scheduler_type: 'cosine', warmup_ratio: 0.03, weight_decay: 0 },
    notes: ['--visual_abstractor_lr in the repo matches no parameter (a no-op), so only the adapters train'],
  }),
  mplug_owl_stage1: Object.freeze<Recipe>({
    name: 'mplug_owl_stage1',
    description:
      'mPLUG-Owl pre-training: vision encoder and visual abstractor (with its query tokens) train; the LLM is frozen',
    source:
      'owl-architecture.md §B.7 (paper 2304.14178v3 stage 1: AdamW β (0.9, 0.98), lr 1e-4, weight decay 0.1, 2k warmup + cosine)',
    model_type: 'mplug-owl',
    trainable: ['^vision_model\\..*', '^query_tokens', '^abstractor\\..*'],
    frozen: [],
    lora: null,
    args: {
      adam_beta1: 0.9,
      adam_beta2: 0.98,
      learning_rate: 1e-4,
      weight_decay: 0.1,
      warmup_steps: 2000,
      lr_scheduler_type: 'cosine',
    },
    notes: ['ε is not given (transformers default 1e-8); 50k steps at 2.1M tokens per batch in the paper'],
  }),
  mplug_owl_stage2: Object.freeze<Recipe>({
    name: 'mplug_owl_stage2',
    description:
      'mPLUG-Owl instruction tuning as the official code: everything frozen, LoRA r 8, α 32, dropout 0.05 on the language model q/v projections',
    source:
      'owl-architecture.md §B.7 (pipeline/train.py --use-lora, scripts/train_it.sh: lr 2e-5, 50 warmup steps, weight decay 1e-4, clip 1.0, the HF default linear schedule)',
    model_type: 'mplug-owl',
    trainable: [],
    frozen: [],
    lora: { r: 8, lora_alpha: 32, lora_dropout: 0.05, target_modules: '.*language_model.*\\.(q_proj|v_proj)' },
    args: { learning_rate: 2e-5, warmup_steps: 50, weight_decay: 1e-4, max_grad_norm: 1, lr_scheduler_type: 'linear' },
    notes: [
      'Adam β and ε are not given (transformers defaults 0.9, 0.999, 1e-8); 4,236 steps at batch 256 in the script',
    ],
  }),
} satisfies Record<string, Recipe>);

export type RecipeName = keyof typeof RECIPES;

export const RECIPE_NAMES = Object.keys(RECIPES) as RecipeName[];

/** A recipe by name (or as given), with its options applied. */
export function resolveRecipe(recipe: RecipeName | Recipe, options: RecipeOptions = {}): Recipe {
  let r: Recipe;
  if (typeof recipe === 'string') {
    const found = (RECIPES as Record<string, Recipe>)[recipe];
    if (!found) {
      throw new OwletError(
        TrainerErrorCode.INVALID_TRAINING_ARGS,
        `unknown recipe ${JSON.stringify(recipe)}; expected one of ${RECIPE_NAMES.join(', ')}`,
      );
    }
    r = found;
  } else r = recipe;
  if (options.freeze_vision_model) {
    if (r.model_type !== 'mplug_owl2') {
      throw new OwletError(
        TrainerErrorCode.INVALID_TRAINING_ARGS,
        `freeze_vision_model applies to mPLUG-Owl2 recipes, not ${r.name}`,
      );
    }
    const { layerwise_lr_decay: _drop, ...rest } = r.args;
    r = {
      ...r,
      name: `${r.name}+freeze_vision_model`,
      frozen: [...r.frozen, OWL2_VISION],
      args: { ...rest, layerwise_lr_decay: null, warmup_ratio: 0.03, weight_decay: 0, lr_scheduler_type: 'cosine' },
      notes: [
        ...r.notes,
        'freeze_vision_model: the repository finetune.sh settings (cosine, warmup ratio 0.03, weight decay 0)',
      ],
    };
  }
  return r;
}

/** Throws when a recipe does not fit the model's config.json `model_type`. */
export function checkRecipeFits(recipe: Recipe, modelType: unknown): void {
  if (modelType !== recipe.model_type) {
    throw new OwletError(
      TrainerErrorCode.INVALID_TRAINING_ARGS,
      `recipe ${recipe.name} is for ${recipe.model_type} models, the model is ${JSON.stringify(modelType)}`,
    );
  }
}
