import type * as tf from '@tensorflow/tfjs-core';

import { Module } from '../module.js';
import { layerNorm } from '../ops/norm.js';
import { Init, type Parameter } from '../parameter.js';

/** torch.nn.LayerNorm over the last dimension with an explicit eps (the models mix 1e-5 and 1e-6). */
export class LayerNorm extends Module {
  readonly eps: number;
  readonly weight: Parameter;
  readonly bias: Parameter;

  constructor(dim: number, eps: number) {
    super();
    this.eps = eps;
    this.weight = this.registerParameter('weight', [dim], { init: Init.ones() });
    this.bias = this.registerParameter('bias', [dim], { init: Init.zeros() });
  }

  forward(x: tf.Tensor): tf.Tensor {
    this.assertNotDisposed();
    return layerNorm(x, this.weight.value, this.bias.value, this.eps);
  }
}
