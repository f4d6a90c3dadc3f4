/**
 * mPLUG-Owl training data: the formats the official training code reads, tokenized with the
 * templates and label masks of @owlet/tokenizer and with images through the image processor of
 * @owlet/vision-encoder.
 *
 * - mPLUG-Owl2 (`mplug_owl2/train/train.py`, LLaVA format): a JSON list of
 *   `{ "id", "image": "rel/path.jpg", "conversations": [{ "from": "human", "value": "<|image|>\n…" },
 *   { "from": "gpt", "value": "…" }, …] }`, tokenized by `preprocess_multimodal` + `preprocess_v1`
 *   (`buildTrainingExample`, template `vicuna_v1` as `--version v1`).
 * - mPLUG-Owl v1 (`pipeline/data_utils/xgpt3_dataset.py`): jsonl lines
 *   `{ "image": ["x.jpg"], "text": "…Human: <image>\nHuman: q\nAI: a", "task_type": "llava_sft" }`
 *   (`buildTrainingExampleV1`).
 */
import { OwletError } from '@owlet/core';
import {
  buildTrainingExample,
  buildTrainingExampleV1,
  type LlamaTokenizer,
  type LlavaTurn,
  type TemplateName,
} from '@owlet/tokenizer';
import type { ImageInput, MplugOwlImageProcessor } from '@owlet/vision-encoder';

import type { CausalLmSample, Dataset } from '../data/dataset.js';
import { TrainerErrorCode } from '../errors.js';

export interface LlavaRecord {
  id?: string | number;
  image?: string;
  conversations: LlavaTurn[];
}

export interface OwlV1Record {
  image?: string[];
  text: string;
  task_type?: string;
}

function invalid(where: string, what: string): OwletError {
  return new OwletError(TrainerErrorCode.INVALID_DATASET, `${where}: ${what}`, { details: { where } });
}

/** Parses and validates an mPLUG-Owl2 / LLaVA training JSON (a list of records). */
export function parseLlavaJson(text: string, name = 'data'): LlavaRecord[] {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw invalid(name, `not valid JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(json)) throw invalid(name, 'expected a JSON list of {image, conversations} records');
  return json.map((r, i) => {
    const where = `${name}[${i}]`;
    if (typeof r !== 'object' || r === null) throw invalid(where, 'not an object');
    const rec = r as Record<string, unknown>;
    if (rec.image !== undefined && typeof rec.image !== 'string') throw invalid(where, '"image" must be a path string');
    if (!Array.isArray(rec.conversations) || rec.conversations.length === 0)
      throw invalid(where, '"conversations" must be a non-empty list');
    const conversations = rec.conversations.map((t, j) => {
      const turn = t as Record<string, unknown>;
      if ((turn?.from !== 'human' && turn?.from !== 'gpt') || typeof turn.value !== 'string') {
        throw invalid(`${where}.conversations[${j}]`, 'expected {"from": "human" | "gpt", "value": string}');
      }
      return { from: turn.from, value: turn.value } as LlavaTurn;
    });
    return {
      ...(rec.id !== undefined ? { id: rec.id as string | number } : {}),
      ...(rec.image !== undefined ? { image: rec.image } : {}),
      conversations,
    };
  });
}

/** Parses and validates an mPLUG-Owl v1 training jsonl (one record per line; blank lines skipped). */
export function parseOwlV1Jsonl(text: string, name = 'data'): OwlV1Record[] {
  const out: OwlV1Record[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === '') return;
    const where = `${name}:${i + 1}`;
    let rec: Record<string, unknown>;
    try {
      rec = JSON.parse(line) as Record<string, unknown>;
    } catch (e) {
      throw invalid(where, `not valid JSON (${(e as Error).message})`);
    }
    if (typeof rec?.text !== 'string' || rec.text === '') throw invalid(where, '"text" must be a non-empty string');
    const image = rec.image ?? [];
    if (!Array.isArray(image) || image.some((p) => typeof p !== 'string'))
      throw invalid(where, '"image" must be a list of path strings');
    out.push({
      text: rec.text,
      ...(image.length ? { image: image as string[] } : {}),
      ...(typeof rec.task_type === 'string' ? { task_type: rec.task_type } : {}),
    });
  });
  if (out.length === 0) throw invalid(name, 'no records');
  return out;
}

/** Fetches an image by the path the record gives (relative to the image folder). */
export type ImageLoader = (path: string) => Promise<ImageInput>;

export interface OwlDatasetOptions {
  tokenizer: LlamaTokenizer;
  /** Needed when records have images. */
  image_processor?: MplugOwlImageProcessor | null;
  /** Default (Node): read `image_folder/path` from disk. */
  load_image?: ImageLoader;
  /** Folder the records' image paths are relative to (the official `--image_folder`). */
  image_folder?: string;
  /** v2 template: `vicuna_v1` (the repository's `--version v1`, default) or `mplug_owl2` (the inference one). */
  template?: TemplateName;
  /** `model_max_length` (v2) / `max_length` (v1); default 2048. */
  model_max_length?: number;
  /** v1: visual tokens per image (the model's queries + 1; 65 for the release). */
  media_tokens_per_image?: number;
}

async function nodeImageLoader(folder: string | undefined): Promise<ImageLoader> {
  const { readFile } = await import('node:fs/promises');
  const { resolve } = await import('node:path');
  return async (path) => new Uint8Array(await readFile(folder ? resolve(folder, path) : path));
}

abstract class OwlDatasetBase<R> implements Dataset<CausalLmSample> {
  readonly records: readonly R[];
  protected readonly options: OwlDatasetOptions;
  private loader: ImageLoader | null = null;
  /** Samples whose label mask failed the official length check (all −100). */
  readonly masked = new Set<number>();

  constructor(records: readonly R[], options: OwlDatasetOptions) {
    this.records = records;
    this.options = options;
  }

  get length(): number {
    return this.records.length;
  }

  protected async pixels(paths: readonly string[], where: string): Promise<Float32Array[]> {
    if (paths.length === 0) return [];
    const proc = this.options.image_processor;
    if (!proc) throw invalid(where, 'the sample has images but no image_processor was given');
    this.loader ??= this.options.load_image ?? (await nodeImageLoader(this.options.image_folder));
    const out: Float32Array[] = [];
    for (const p of paths) {
      let input: ImageInput;
      try {
        input = await this.loader(p);
      } catch (e) {
        throw invalid(where, `cannot read image ${p}: ${(e as Error).message}`);
      }
      out.push((await proc.preprocess(input)).data);
    }
    return out;
  }

  abstract get(index: number): Promise<CausalLmSample>;
}

/** mPLUG-Owl2 samples from LLaVA-format records. */
export class MplugOwl2Dataset extends OwlDatasetBase<LlavaRecord> {
  async get(index: number): Promise<CausalLmSample> {
    const r = this.records[index];
    if (!r) throw invalid('dataset', `index ${index} is outside [0, ${this.length})`);
    const ex = buildTrainingExample(this.options.tokenizer, r.conversations, {
      template: this.options.template ?? 'vicuna_v1',
      has_image: r.image !== undefined,
      ...(this.options.model_max_length ? { model_max_length: this.options.model_max_length } : {}),
    });
    if (!ex.ok) this.masked.add(index);
    const pixel_values = await this.pixels(r.image ? [r.image] : [], `record ${r.id ?? index}`);
    return { input_ids: ex.input_ids, labels: ex.labels, pixel_values };
  }
}

/** mPLUG-Owl v1 samples from jsonl records. */
export class MplugOwlV1Dataset extends OwlDatasetBase<OwlV1Record> {
  async get(index: number): Promise<CausalLmSample> {
    const r = this.records[index];
    if (!r) throw invalid('dataset', `index ${index} is outside [0, ${this.length})`);
    const ex = buildTrainingExampleV1(this.options.tokenizer, r.text, {
      ...(this.options.media_tokens_per_image ? { media_tokens_per_image: this.options.media_tokens_per_image } : {}),
      ...(this.options.model_max_length ? { max_length: this.options.model_max_length } : {}),
    });
    const images = r.image ?? [];
    if (ex.n_images !== images.length) {
      throw invalid(
        `line ${index + 1}`,
        `the text has ${ex.n_images} <image> slot(s) but "image" lists ${images.length}`,
      );
    }
    const pixel_values = await this.pixels(images, `line ${index + 1}`);
    return { input_ids: ex.input_ids, labels: ex.labels, pixel_values };
  }
}

/**
 * Reads a training file by its format: `.json` (mPLUG-Owl2 LLaVA list) or `.jsonl` (mPLUG-Owl v1).
 * Images are read relative to `image_folder` (default: the data file's folder). Node only.
 */
export async function loadOwlTrainingData(
  path: string,
  options: OwlDatasetOptions,
): Promise<MplugOwl2Dataset | MplugOwlV1Dataset> {
  const { readFile } = await import('node:fs/promises');
  const { basename, dirname } = await import('node:path');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new OwletError(TrainerErrorCode.INVALID_DATASET, `cannot read ${path}: ${(e as Error).message}`);
  }
  const opts = { ...options, image_folder: options.image_folder ?? dirname(path) };
  if (path.endsWith('.jsonl')) return new MplugOwlV1Dataset(parseOwlV1Jsonl(text, basename(path)), opts);
  if (path.endsWith('.json')) return new MplugOwl2Dataset(parseLlavaJson(text, basename(path)), opts);
  throw new OwletError(
    TrainerErrorCode.INVALID_DATASET,
    `${path}: expected a .json (mPLUG-Owl2, LLaVA format) or .jsonl (mPLUG-Owl v1) file`,
  );
}
