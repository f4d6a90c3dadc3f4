import type * as tf from '@tensorflow/tfjs-core';

import { Module } from '../module.js';
import { embedding } from '../ops/embedding.js';
import { Init, type Parameter } from '../parameter.js';

/** torch.nn.Embedding: weight [num_embeddings, dim]. */
export class Embedding extends Module {
  readonly numEmbeddings: number;
  readonly dim: number;
  readonly weight: Parameter;

  constructor(numEmbeddings: number, dim: number) {
    super();
    this.numEmbeddings = numEmbeddings;
    this.dim = dim;
    this.weight = this.registerParameter('weight', [numEmbeddings, dim], { init: Init.normal(0.02), rowTable: true });
  }

  /** ids [...] (int32 tensor or numbers) → [..., dim] */
  forward(ids: tf.Tensor | readonly number[] | Int32Array): tf.Tensor {
    this.assertNotDisposed();
    return embedding(this.weight, ids);
  }
}
