import type * as tf from '@tensorflow/tfjs-core';

import { Module } from '../module.js';
import { rmsNorm } from '../ops/norm.js';
import { Init, type Parameter } from '../parameter.js';

/** LlamaRMSNorm (transformers 4.31): weight [dim], no bias. */
export class RMSNorm extends Module {
  readonly eps: number;
  readonly weight: Parameter;

  constructor(dim: number, eps: number) {
    super();
    this.eps = eps;
    this.weight = this.registerParameter('weight', [dim], { init: Init.ones() });
  }

  forward(x: tf.Tensor): tf.Tensor {
    this.assertNotDisposed();
    return rmsNorm(x, this.weight.value, this.eps);
  }
}
