/**
 * Running owlet's own WGSL through the tfjs WebGPU backend (`backend.runWebGPUProgram`), so owned
 * kernels share tfjs' GPUDevice, buffers, command encoder and pipeline cache: their inputs and
 * outputs are ordinary tfjs tensors, and they are ordered with every stock kernel.
 *
 * tfjs writes the shader's preamble: the output binding `result`, one `array<…>` binding per name
 * in `variableNames` (float32 → f32, int32 → i32, widened to vecN by `variableComponents`), and a
 * `uniforms` struct with each input's shape and strides followed by the program's own fields.
 * Programs here declare `dispatchLayout.y` so tfjs calls `main()` without an index; the code
 * computes its workgroup index itself with `owletWorkgroupIndex()`, which also covers dispatches
 * folded into two dimensions (more workgroups than `maxComputeWorkgroupsPerDimension`).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { WebGPUBackend, WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu';

export type UniformType = 'int32' | 'uint32' | 'float32';

export interface Uniform {
  /** Field name in WGSL (`uniforms.<name>`). */
  name: string;
  type: UniformType;
  value: number;
}

export interface OwnedProgramSpec {
  /** Stable pipeline cache key: kernel name plus every compile-time choice (dtype, tile, flags). */
  key: string;
  inputs: readonly tf.TensorInfo[];
  /** One name per input (WGSL binding names). */
  names: readonly string[];
  /** Vector width of each input's array element (1, 2 or 4); default 1. */
  components?: readonly number[];
  outputShape: readonly number[];
  outputDtype?: 'float32' | 'int32';
  /** Write into this existing output instead of allocating one (several passes filling one tensor). */
  output?: tf.TensorInfo;
  /** Total workgroups (a 1-D grid; folded into 2-D when over the device limit). */
  workgroups: number;
  workgroupSize: number;
  uniforms?: readonly Uniform[];
  /** The WGSL with `fn main()`; the preamble and `_start` come from tfjs. */
  code: string;
}

const WGSL_TYPE: Record<UniformType, string> = { int32: 'i32', uint32: 'u32', float32: 'f32' };

/** Common helpers prepended to every owned shader. */
const COMMON = /* wgsl */ `
fn owletWorkgroupIndex() -> u32 {
  return workgroupId.x + workgroupId.y * numWorkgroups.x;
}
`;

export function webgpuBackend(): WebGPUBackend {
  return tf.backend() as unknown as WebGPUBackend;
}

/** Splits `n` workgroups into an x·y grid within the per-dimension limit. */
export function foldDispatch(n: number, maxPerDim: number): [number, number, number] {
  if (n <= maxPerDim) return [Math.max(1, n), 1, 1];
  const y = Math.ceil(n / maxPerDim);
  const x = Math.ceil(n / y);
  return [x, y, 1];
}

/** Runs one owned program; returns the output's TensorInfo (use `engineTensor` to wrap it). */
export function runOwned(spec: OwnedProgramSpec): tf.TensorInfo {
  const backend = webgpuBackend();
  const max = backend.device.limits.maxComputeWorkgroupsPerDimension;
  const uniforms = spec.uniforms ?? [];
  const program: WebGPUProgram = {
    // y non-empty: tfjs calls main() and leaves indexing to the program (see the header)
    dispatchLayout: { x: [], y: [0, 1, 2, 3, 4, 5, 6] },
    dispatch: foldDispatch(spec.workgroups, max),
    outputShape: [...spec.outputShape],
    shaderKey: `owlet:${spec.key}:wg${spec.workgroupSize}`,
    uniforms: uniforms.map((u) => `${u.name} : ${WGSL_TYPE[u.type]},`).join(' '),
    variableNames: [...spec.names],
    ...(spec.components ? { variableComponents: [...spec.components] } : {}),
    workgroupSize: [spec.workgroupSize, 1, 1],
    getUserCode: () => `${COMMON}\n${spec.code}`,
  };
  return backend.runWebGPUProgram(
    program,
    [...spec.inputs],
    spec.outputDtype ?? 'float32',
    uniforms.map((u) => ({ type: u.type, data: [u.value] })),
    spec.output,
  );
}

/** A tensor the caller owns, from a TensorInfo an owned program produced. */
export function engineTensor(info: tf.TensorInfo): tf.Tensor {
  return tf.engine().makeTensorFromTensorInfo(info);
}
