import type * as tf from '@tensorflow/tfjs-core';

import { Module } from '../module.js';
import { linear } from '../ops/linear.js';
import { Init, type Parameter, type ParameterInit } from '../parameter.js';

export interface LinearOptions {
  bias?: boolean;
  /** Weight initialiser for `initialize()`; default normal(0, 0.02) as LLaMA/CLIP. */
  init?: ParameterInit;
}

/** torch.nn.Linear: weight [out, in] (checkpoint layout), optional bias [out]. */
export class Linear extends Module {
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly weight: Parameter;
  readonly bias: Parameter | null;

  constructor(inFeatures: number, outFeatures: number, options: LinearOptions = {}) {
    super();
    this.inFeatures = inFeatures;
    this.outFeatures = outFeatures;
    this.weight = this.registerParameter('weight', [outFeatures, inFeatures], {
      init: options.init ?? Init.normal(0.02),
      linearWeight: true,
    });
    this.bias = options.bias === false ? null : this.registerParameter('bias', [outFeatures], { init: Init.zeros() });
  }

  /** x [..., in] → [..., out] */
  forward(x: tf.Tensor): tf.Tensor {
    this.assertNotDisposed();
    return linear(x, this.weight, this.bias);
  }
}
