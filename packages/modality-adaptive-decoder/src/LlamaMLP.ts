// Mirrors LlamaMLP — transformers 4.31 models/llama/modeling_llama.py (pretraining_tp 1)
import type * as tf from '@tensorflow/tfjs-core';
import { Linear, Module, swiglu } from '@owlet/core';

import type { LlamaConfig } from './config.js';

/** `down_proj(silu(gate_proj(x)) * up_proj(x))`: keys `gate_proj`, `up_proj`, `down_proj` (no biases). */
export class LlamaMLP extends Module {
  readonly gate_proj: Linear;
  readonly up_proj: Linear;
  readonly down_proj: Linear;

  constructor(config: Pick<LlamaConfig, 'hidden_size' | 'intermediate_size'>) {
    super();
    const { hidden_size: d, intermediate_size: f } = config;
    this.gate_proj = this.registerModule('gate_proj', new Linear(d, f, { bias: false }));
    this.up_proj = this.registerModule('up_proj', new Linear(d, f, { bias: false }));
    this.down_proj = this.registerModule('down_proj', new Linear(f, d, { bias: false }));
  }

  /** down(silu(gate(x)) · up(x)); x [..., D] → [..., D] */
  forward(x: tf.Tensor): tf.Tensor {
    return this.scope(() => this.down_proj.forward(swiglu(this.gate_proj.forward(x), this.up_proj.forward(x))));
  }
}
