/**
 * Exports owlet's vision tower (`MplugOwlVisionModel`) and, optionally, its visual abstractor
 * (`MplugOwlVisualAbstractorModel`) to an ONNX model (opset 17), built node by node from the
 * modules' parameters: Conv for the patch embedding, LayerNormalization, MatMul + Add for every
 * Linear (weights stored pre-transposed [in, out]), Softmax attention, x·σ(1.702x) for quick_gelu,
 * Erf for gelu, x·σ(x) for SiLU. The batch dimension is symbolic (`N`).
 *
 * Graph inputs: `pixel_values` [N, 3, S, S] (and `query_embeds` [1, Q, D] for an mPLUG-Owl v1
 * abstractor, which does not own its queries). Outputs: `last_hidden_state` [N, 1 + P, D] and, with
 * an abstractor, `visual_tokens` [N, Q + 1, D_llm].
 */
import * as tf from '@tensorflow/tfjs-core';
import { ErrorCode, type LayerNorm, type Linear, OwletError, type Parameter } from '@owlet/core';
import type { MplugOwlVisionModel } from '@owlet/vision-encoder';
import type { MplugOwlVisualAbstractorModel } from '@owlet/visual-abstractor';

import {
  OnnxDataType,
  modelProto,
  nodeProto,
  tensorProto,
  valueInfoProto,
  type OnnxAttribute,
  type ProtoMessage,
} from './proto.js';

export const ONNX_OPSET = 17;
export const ONNX_IR_VERSION = 8;

function bytesOf(a: Float32Array | BigInt64Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Builds a graph: named values, initializers, nodes. */
export class OnnxGraphBuilder {
  readonly nodes: ProtoMessage[] = [];
  readonly initializers: ProtoMessage[] = [];
  readonly inputs: ProtoMessage[] = [];
  readonly outputs: ProtoMessage[] = [];
  private counter = 0;
  private readonly consts = new Map<string, string>();
  initializerBytes = 0;

  fresh(hint: string): string {
    return `${hint}_${this.counter++}`;
  }

  input(name: string, dims: readonly (number | string)[]): string {
    this.inputs.push(valueInfoProto(name, OnnxDataType.FLOAT, dims));
    return name;
  }

  output(value: string, name: string, dims: readonly (number | string)[]): void {
    this.node('Identity', [value], {}, name);
    this.outputs.push(valueInfoProto(name, OnnxDataType.FLOAT, dims));
  }

  floatInit(name: string, dims: readonly number[], data: Float32Array): string {
    const n = dims.reduce((a, b) => a * b, 1);
    if (data.length !== n) {
      throw new OwletError(
        ErrorCode.SHAPE_MISMATCH,
        `onnx initializer ${name}: expected ${n} values for [${dims.join(', ')}], got ${data.length}`,
      );
    }
    this.initializers.push(tensorProto(name, dims, OnnxDataType.FLOAT, bytesOf(data)));
    this.initializerBytes += data.byteLength;
    return name;
  }

  /** An int64 constant (shared by value). */
  i64(values: readonly number[], dims: readonly number[] = [values.length]): string {
    const key = `i64:${dims.join('x')}:${values.join(',')}`;
    let name = this.consts.get(key);
    if (!name) {
      name = this.fresh('const_i64');
      this.initializers.push(
        tensorProto(name, dims, OnnxDataType.INT64, bytesOf(BigInt64Array.from(values.map((v) => BigInt(v))))),
      );
      this.consts.set(key, name);
    }
    return name;
  }

  /** A float scalar constant (shared by value). */
  scalar(v: number): string {
    const key = `f32:${v}`;
    let name = this.consts.get(key);
    if (!name) {
      name = this.floatInit(this.fresh('const_f32'), [], Float32Array.of(v));
      this.consts.set(key, name);
    }
    return name;
  }

  node(op: string, inputs: readonly string[], attrs: Record<string, OnnxAttribute> = {}, output?: string): string {
    const out = output ?? this.fresh(op.toLowerCase());
    this.nodes.push(nodeProto(op, inputs, [out], `${op}_${this.nodes.length}`, attrs));
    return out;
  }

  nodeMulti(op: string, inputs: readonly string[], n: number, attrs: Record<string, OnnxAttribute> = {}): string[] {
    const outs = Array.from({ length: n }, () => this.fresh(op.toLowerCase()));
    this.nodes.push(nodeProto(op, inputs, outs, `${op}_${this.nodes.length}`, attrs));
    return outs;
  }

  toModel(graphName: string): ProtoMessage {
    return modelProto({
      graphName,
      nodes: this.nodes,
      initializers: this.initializers,
      inputs: this.inputs,
      outputs: this.outputs,
      opset: ONNX_OPSET,
      irVersion: ONNX_IR_VERSION,
      producer: 'owlet-bench',
      producerVersion: '0.0.0',
    });
  }
}

/** Host copies of every value the export reads (read asynchronously: WebGPU has no dataSync in Node). */
interface HostValues {
  params: Map<Parameter, Float32Array>;
  /** Per abstractor attention module: [q_pos_embed, k_pos_embed] or null. */
  positions: Map<unknown, [Float32Array, Float32Array] | null>;
}

async function readHost(t: tf.Tensor): Promise<Float32Array> {
  try {
    return (await t.data()) as Float32Array;
  } finally {
    t.dispose();
  }
}

async function snapshot(vision: MplugOwlVisionModel, abstractor?: MplugOwlVisualAbstractorModel): Promise<HostValues> {
  const params = new Map<Parameter, Float32Array>();
  const positions = new Map<unknown, [Float32Array, Float32Array] | null>();
  for (const m of abstractor ? [vision, abstractor] : [vision]) {
    for (const [, p] of m.namedParameters()) params.set(p, await readHost(p.canonical()));
  }
  if (abstractor) {
    for (const layer of abstractor.encoder.layers) {
      const att = layer.crossattention.attention;
      const q = att.qPosEmbed();
      const k = att.kPosEmbed();
      positions.set(att, q && k ? [await readHost(q), await readHost(k)] : null);
      if (!(q && k)) tf.dispose([q, k].filter((t): t is tf.Tensor2D => t !== null));
    }
  }
  return { params, positions };
}

/** [out, in] row-major → [in, out] row-major. */
function transpose2d(w: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = w[r * cols + c]!;
  return out;
}

class Exporter {
  constructor(
    readonly g: OnnxGraphBuilder,
    private readonly host: HostValues,
  ) {}

  private values(p: Parameter): Float32Array {
    const v = this.host.params.get(p);
    if (!v) throw new OwletError(ErrorCode.INVALID_ARGUMENT, `onnx export: parameter ${p.key} was not read`);
    return v;
  }

  linear(x: string, lin: Linear, key: string): string {
    const [out, inF] = lin.weight.shape as [number, number];
    const w = this.g.floatInit(`${key}.weight.T`, [inF, out], transpose2d(this.values(lin.weight), out, inF));
    let y = this.g.node('MatMul', [x, w]);
    if (lin.bias) y = this.g.node('Add', [y, this.g.floatInit(`${key}.bias`, [out], this.values(lin.bias))]);
    return y;
  }

  layerNorm(x: string, ln: LayerNorm, key: string): string {
    const [d] = ln.weight.shape as [number];
    const scale = this.g.floatInit(`${key}.weight`, [d], this.values(ln.weight));
    const bias = this.g.floatInit(`${key}.bias`, [d], this.values(ln.bias));
    return this.g.node('LayerNormalization', [x, scale, bias], { axis: -1, epsilon: { float: ln.eps } });
  }

  /** softmax(q kᵀ · scale) v over [N, H, Lq, Dh] / [N, H, Lk, Dh]. */
  attention(q: string, k: string, v: string, scale: number): string {
    const kt = this.g.node('Transpose', [k], { perm: [0, 1, 3, 2] });
    const scores = this.g.node('Mul', [this.g.node('MatMul', [q, kt]), this.g.scalar(scale)]);
    return this.g.node('MatMul', [this.g.node('Softmax', [scores], { axis: -1 }), v]);
  }

  /** [N, L, H·Dh] → [N, H, L, Dh] */
  splitHeads(x: string, h: number, dh: number): string {
    return this.g.node('Transpose', [this.g.node('Reshape', [x, this.g.i64([0, 0, h, dh])])], { perm: [0, 2, 1, 3] });
  }

  /** [N, H, L, Dh] → [N, L, H·Dh] */
  mergeHeads(x: string, d: number): string {
    return this.g.node('Reshape', [this.g.node('Transpose', [x], { perm: [0, 2, 1, 3] }), this.g.i64([0, 0, d])]);
  }

  /** `[N]` as a 1-D int64 tensor, from a value whose first dimension is the batch. */
  batchOf(x: string): string {
    return this.g.node('Slice', [this.g.node('Shape', [x]), this.g.i64([0]), this.g.i64([1])]);
  }

  /** Broadcasts a [1, a, b] value to [N, a, b]. */
  expandBatch(x: string, n: string, a: number, b: number): string {
    return this.g.node('Expand', [x, this.g.node('Concat', [n, this.g.i64([a, b])], { axis: 0 })]);
  }

  vision(model: MplugOwlVisionModel, pixels: string): string {
    const g = this.g;
    const c = model.config;
    const d = c.hidden_size;
    const p = c.patch_size;
    const emb = model.embeddings;
    // Conv2d(3 → D, k = s = p, no bias): [N, 3, S, S] → [N, D, g, g] → [N, D, P] → [N, P, D]
    const wConv = g.floatInit('embeddings.patch_embed.weight', [d, 3, p, p], this.values(emb.patch_embed.weight));
    const conv = g.node('Conv', [pixels, wConv], { kernel_shape: [p, p], strides: [p, p] });
    let x = g.node('Transpose', [g.node('Reshape', [conv, g.i64([0, d, -1])])], { perm: [0, 2, 1] });
    if (emb.cls_token) {
      const cls = g.floatInit('embeddings.cls_token', [1, 1, d], this.values(emb.cls_token));
      x = g.node('Concat', [this.expandBatch(cls, this.batchOf(pixels), 1, d), x], { axis: 1 }); // CLS first
    }
    const pos = emb.position_embedding;
    x = g.node('Add', [x, g.floatInit('embeddings.position_embedding', [...pos.shape], this.values(pos))]);
    x = this.layerNorm(x, emb.pre_layernorm, 'embeddings.pre_layernorm');
    const h = c.num_attention_heads;
    const dh = d / h;
    [...model.encoder.layers].forEach((layer, j) => {
      const key = `encoder.layers.${j}`;
      const a = this.layerNorm(x, layer.input_layernorm, `${key}.input_layernorm`);
      // fused qkv, head-interleaved: feature h·3·Dh + t·Dh + d → [N, L, H, 3·Dh] → [N, H, L, 3·Dh] → q, k, v
      const qkv = this.splitHeads(
        this.linear(a, layer.self_attn.query_key_value, `${key}.self_attn.query_key_value`),
        h,
        3 * dh,
      );
      const [q, k, v] = g.nodeMulti('Split', [qkv, g.i64([dh, dh, dh])], 3, { axis: 3 }) as [string, string, string];
      const ctx = this.mergeHeads(this.attention(q, k, v, dh ** -0.5), d);
      x = g.node('Add', [x, this.linear(ctx, layer.self_attn.dense, `${key}.self_attn.dense`)]);
      const m = this.layerNorm(x, layer.post_attention_layernorm, `${key}.post_attention_layernorm`);
      const f1 = this.linear(m, layer.mlp.fc1, `${key}.mlp.fc1`);
      const act =
        c.hidden_act === 'quick_gelu'
          ? g.node('Mul', [f1, g.node('Sigmoid', [g.node('Mul', [f1, g.scalar(1.702)])])])
          : g.node('Mul', [
              g.node('Mul', [f1, g.scalar(0.5)]),
              g.node('Add', [g.node('Erf', [g.node('Mul', [f1, g.scalar(Math.SQRT1_2)])]), g.scalar(1)]),
            ]);
      x = g.node('Add', [x, this.linear(act, layer.mlp.fc2, `${key}.mlp.fc2`)]);
    });
    return model.post_layernorm ? this.layerNorm(x, model.post_layernorm, 'post_layernorm') : x;
  }

  abstractor(model: MplugOwlVisualAbstractorModel, image: string, queriesInput: string | null): string {
    const g = this.g;
    const c = model.config;
    const d = c.hidden_size;
    const q = c.num_learnable_queries;
    const h = c.num_attention_heads;
    const dh = d / h;
    const n = this.batchOf(image);
    const queries = model.query_embeds
      ? g.floatInit('abstractor.query_embeds', [1, q, d], this.values(model.query_embeds))
      : (queriesInput as string);
    let x = this.expandBatch(queries, n, q, d);
    [...model.encoder.layers].forEach((layer, l) => {
      const key = `abstractor.encoder.layers.${l}.crossattention`;
      const ca = layer.crossattention;
      const att = ca.attention;
      const xn = this.layerNorm(x, ca.norm1, `${key}.norm1`);
      const kv = g.node('Concat', [xn, this.layerNorm(image, ca.normk, `${key}.normk`)], { axis: 1 }); // queries first
      let qIn = xn;
      let kIn = kv;
      const tables = this.host.positions.get(att);
      if (tables) {
        const [qp, kp] = tables;
        const kRows = kp.length / d;
        const qk = new Float32Array(qp.length + kp.length);
        qk.set(qp);
        qk.set(kp, qp.length);
        qIn = g.node('Add', [xn, g.floatInit(`${key}.attention.q_pos_embed`, [q, d], qp)]);
        kIn = g.node('Add', [kv, g.floatInit(`${key}.attention.qk_pos_embed`, [q + kRows, d], qk)]);
      }
      const qh = this.splitHeads(this.linear(qIn, att.query, `${key}.attention.query`), h, dh);
      const kh = this.splitHeads(this.linear(kIn, att.key, `${key}.attention.key`), h, dh);
      const vh = this.splitHeads(this.linear(kv, att.value, `${key}.attention.value`), h, dh); // no positions on values
      const ctx = this.mergeHeads(this.attention(qh, kh, vh, dh ** -0.5), d);
      const y = g.node('Add', [xn, this.linear(ctx, ca.output.out_proj, `${key}.output.out_proj`)]); // residual = normed queries
      const mlp = ca.output.mlp;
      const z = this.layerNorm(y, ca.output.norm2, `${key}.output.norm2`);
      const a = this.linear(z, mlp.w1, `${key}.output.mlp.w1`);
      const gated = g.node('Mul', [
        g.node('Mul', [a, g.node('Sigmoid', [a])]),
        this.linear(z, mlp.w3, `${key}.output.mlp.w3`),
      ]);
      const inner = this.layerNorm(gated, mlp.ffn_ln, `${key}.output.mlp.ffn_ln`);
      x = g.node('Add', [y, this.linear(inner, mlp.w2, `${key}.output.mlp.w2`)]);
    });
    const out = this.linear(x, model.visual_fc, 'abstractor.visual_fc');
    const dl = c.language_hidden_size;
    const eos = g.floatInit('abstractor.vit_eos', [1, 1, dl], this.values(model.vit_eos));
    return g.node('Concat', [out, this.expandBatch(eos, n, 1, dl)], { axis: 1 });
  }
}

export interface ExportedOnnx {
  model: ProtoMessage;
  /** Bytes of all initializers (≈ the weights). */
  weightBytes: number;
  inputNames: string[];
  outputNames: string[];
}

/**
 * Builds the ONNX model of `vision` (+ `abstractor`). Reads every parameter once (async host copies);
 * the modules are not changed. Fails with a typed error when the protobuf would pass 2 GiB (the
 * format's limit without external data).
 */
export async function exportVisionToOnnx(
  vision: MplugOwlVisionModel,
  abstractor?: MplugOwlVisualAbstractorModel,
): Promise<ExportedOnnx> {
  const g = new OnnxGraphBuilder();
  const ex = new Exporter(g, await snapshot(vision, abstractor));
  const c = vision.config;
  const pixels = g.input('pixel_values', ['N', 3, c.image_size, c.image_size]);
  const tokens = vision.dims.seq_length;
  const last = ex.vision(vision, pixels);
  g.output(last, 'last_hidden_state', ['N', tokens, c.hidden_size]);
  const inputNames = ['pixel_values'];
  const outputNames = ['last_hidden_state'];
  if (abstractor) {
    const ac = abstractor.config;
    if (ac.encoder_hidden_size !== c.hidden_size) {
      throw new OwletError(
        ErrorCode.SHAPE_MISMATCH,
        `onnx export: the abstractor expects image tokens of width ${ac.encoder_hidden_size}, the vision tower gives ${c.hidden_size}`,
      );
    }
    let queries: string | null = null;
    if (!abstractor.query_embeds) {
      queries = g.input('query_embeds', [1, ac.num_learnable_queries, ac.hidden_size]);
      inputNames.push('query_embeds');
    }
    const vis = ex.abstractor(abstractor, last, queries);
    g.output(vis, 'visual_tokens', ['N', ac.num_learnable_queries + 1, ac.language_hidden_size]);
    outputNames.push('visual_tokens');
  }
  const model = g.toModel(abstractor ? 'owlet_vision_abstractor' : 'owlet_vision');
  if (model.length >= 2 ** 31) {
    throw new OwletError(
      ErrorCode.INVALID_ARGUMENT,
      `onnx export: the model is ${model.length} bytes, over protobuf's 2 GiB limit (external data is not written)`,
    );
  }
  return { model, weightBytes: g.initializerBytes, inputNames, outputNames };
}
