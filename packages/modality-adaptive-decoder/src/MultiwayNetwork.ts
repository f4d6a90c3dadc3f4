// Mirrors MultiwayNetwork — X-PLUG/mPLUG-Owl@0f3068f mPLUG-Owl2/mplug_owl2/model/multiway.py
import type * as tf from '@tensorflow/tfjs-core';
import { ErrorCode, Module, ModuleList, OwletError } from '@owlet/core';

import { ModalityRouting, type ModalityIndicatorsInput } from './ModalityRouting.js';

export interface MultiwayBranch extends Module {
  forward(x: tf.Tensor): tf.Tensor;
}

/**
 * `num_multiway` copies of a module under `multiway.0` (text), `multiway.1` (image); each token is
 * processed by the copy its modality indicator names: out[b, t] = multiway[M[b, t]](x[b, t]).
 * The reference gathers each modality's tokens and scatters the results back; here the routing
 * strategy (`ModalityRouting`) is chosen once per forward, and a sequence whose tokens all share
 * one modality (every decode step) runs only that copy.
 */
export class MultiwayNetwork<M extends MultiwayBranch = MultiwayBranch> extends Module {
  readonly multiway: ModuleList<M>;

  /** `make(m)` builds copy m (called `numMultiway` times: the copies never share parameters). */
  constructor(make: (m: number) => M, numMultiway = 2) {
    super();
    if (!Number.isInteger(numMultiway) || numMultiway < 1) {
      throw new OwletError(
        ErrorCode.INVALID_ARGUMENT,
        `MultiwayNetwork: num_multiway must be a positive integer, got ${numMultiway}`,
      );
    }
    this.multiway = this.registerModule('multiway', new ModuleList<M>());
    for (let m = 0; m < numMultiway; m++) this.multiway.push(make(m));
  }

  get numMultiway(): number {
    return this.multiway.length;
  }

  /**
   * hidden [B, L, …] and the per-token modality → [B, L, …out]. `modality` is a routing built by
   * the model for the whole forward, or raw indicators ([B][L] numbers, validated here).
   */
  forward(hidden: tf.Tensor, modality: ModalityRouting | ModalityIndicatorsInput): tf.Tensor {
    this.assertNotDisposed();
    return this.scope(() => {
      const routing =
        modality instanceof ModalityRouting
          ? modality
          : ModalityRouting.create(modality, hidden.shape[0] ?? 0, hidden.shape[1] ?? 0, this.numMultiway);
      return routing.route(
        hidden,
        [...this.multiway].map((m) => (x: tf.Tensor) => m.forward(x)),
      );
    });
  }
}
