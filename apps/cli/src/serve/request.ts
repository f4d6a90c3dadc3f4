/**
 * The `POST /v1/chat/completions` body: its JSON schema (strict: unknown fields, wrong types and
 * out-of-range numbers are 400s before anything runs — checklist B31, B32) and its translation
 * into an engine job. OpenAI fields owlet does not implement are accepted only at their neutral
 * value (`logprobs: false`, `presence_penalty: 0`, …) and refused otherwise, never ignored.
 */
import type { ChatMessage, ContentPart } from '@owlet/tokenizer';

import { badRequest } from './errors.js';
import type { EngineJob } from './protocol.js';

/** Server-side cap on `n` (checklist §7.4). */
export const MAX_N = 8;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const nullable = (s: Record<string, unknown>) => ({ ...s, type: [s.type as string, 'null'] });

const textPart = {
  type: 'object',
  additionalProperties: false,
  required: ['type', 'text'],
  properties: { type: { const: 'text' }, text: { type: 'string' } },
};
const imagePart = {
  type: 'object',
  additionalProperties: false,
  required: ['type', 'image_url'],
  properties: {
    type: { const: 'image_url' },
    image_url: {
      type: 'object',
      additionalProperties: false,
      required: ['url'],
      properties: { url: { type: 'string' }, detail: { enum: ['auto', 'low', 'high'] } },
    },
  },
};

export const chatCompletionSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['model', 'messages'],
  properties: {
    model: { type: 'string', minLength: 1, maxLength: 256 },
    messages: {
      type: 'array',
      minItems: 1,
      maxItems: 1024,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['role', 'content'],
        properties: {
          role: { enum: ['system', 'developer', 'user', 'assistant'] },
          name: { type: 'string', maxLength: 256 },
          content: {
            anyOf: [
              { type: 'string' },
              {
                type: 'array',
                maxItems: 256,
                items: {
                  type: 'object',
                  required: ['type'],
                  discriminator: { propertyName: 'type' },
                  oneOf: [textPart, imagePart],
                },
              },
            ],
          },
        },
      },
    },
    stream: nullable({ type: 'boolean' }),
    stream_options: {
      type: ['object', 'null'],
      additionalProperties: false,
      properties: { include_usage: { type: 'boolean' } },
    },
    max_tokens: nullable({ type: 'integer', minimum: 1, maximum: MAX_SAFE }),
    max_completion_tokens: nullable({ type: 'integer', minimum: 1, maximum: MAX_SAFE }),
    temperature: nullable({ type: 'number', minimum: 0, maximum: 2 }),
    top_p: nullable({ type: 'number', exclusiveMinimum: 0, maximum: 1 }),
    top_k: nullable({ type: 'integer', minimum: 0, maximum: 1_000_000 }),
    repetition_penalty: nullable({ type: 'number', exclusiveMinimum: 0, maximum: 100 }),
    seed: nullable({ type: 'integer', minimum: -MAX_SAFE, maximum: MAX_SAFE }),
    stop: {
      anyOf: [
        { type: 'string', minLength: 1, maxLength: 256 },
        { type: 'array', maxItems: 4, items: { type: 'string', minLength: 1, maxLength: 256 } },
        { type: 'null' },
      ],
    },
    n: nullable({ type: 'integer', minimum: 1, maximum: MAX_N }),
    user: { type: 'string', maxLength: 256 },
    // OpenAI fields owlet accepts only at their neutral value.
    frequency_penalty: nullable({ type: 'number', minimum: -2, maximum: 2 }),
    presence_penalty: nullable({ type: 'number', minimum: -2, maximum: 2 }),
    logit_bias: {
      type: ['object', 'null'],
      propertyNames: { pattern: '^(0|[1-9][0-9]{0,8})$' },
      additionalProperties: { type: 'number', minimum: -100, maximum: 100 },
    },
    logprobs: nullable({ type: 'boolean' }),
    top_logprobs: nullable({ type: 'integer', minimum: 0, maximum: 20 }),
    response_format: {
      type: ['object', 'null'],
      required: ['type'],
      properties: { type: { enum: ['text', 'json_object', 'json_schema'] } },
    },
    tools: { type: ['array', 'null'], maxItems: 128 },
    tool_choice: { anyOf: [{ type: 'string' }, { type: 'object' }, { type: 'null' }] },
    parallel_tool_calls: nullable({ type: 'boolean' }),
  },
} as const;

type Part = { type: 'text'; text: string } | { type: 'image_url'; image_url: { url: string; detail?: string } };

export interface ChatCompletionBody {
  model: string;
  messages: { role: 'system' | 'developer' | 'user' | 'assistant'; name?: string; content: string | Part[] }[];
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  repetition_penalty?: number | null;
  seed?: number | null;
  stop?: string | string[] | null;
  n?: number | null;
  user?: string;
  frequency_penalty?: number | null;
  presence_penalty?: number | null;
  logit_bias?: Record<string, number> | null;
  logprobs?: boolean | null;
  top_logprobs?: number | null;
  response_format?: { type: string } | null;
  tools?: unknown[] | null;
  tool_choice?: unknown;
  parallel_tool_calls?: boolean | null;
}

export interface ImageRef {
  url: string;
  /** Where it is in the request (`messages[0].content[1].image_url.url`). */
  param: string;
}

export interface TranslatedRequest {
  job: Omit<EngineJob, 'id' | 'images'>;
  images: ImageRef[];
  stream: boolean;
  includeUsage: boolean;
}

function unsupported(param: string, what: string): never {
  throw badRequest(`${param} ${what} is not supported by owlet`, param, 'unsupported_parameter');
}

/**
 * Validated body → engine job and the image URLs to load. Checks what the schema cannot: the
 * neutral-only fields, the image count (before any image is read: checklist L8), roles, and
 * `max_tokens` against the context window.
 */
export function translateRequest(
  body: ChatCompletionBody,
  limits: { maxImages: number; contextWindow: number },
): TranslatedRequest {
  if (body.frequency_penalty) unsupported('frequency_penalty', `${body.frequency_penalty}`);
  if (body.presence_penalty) unsupported('presence_penalty', `${body.presence_penalty}`);
  if (body.logit_bias && Object.keys(body.logit_bias).length > 0) unsupported('logit_bias', '(non-empty)');
  if (body.logprobs) unsupported('logprobs', 'true');
  if (body.top_logprobs !== undefined && body.top_logprobs !== null) unsupported('top_logprobs', '');
  if (body.response_format && body.response_format.type !== 'text')
    unsupported('response_format', `of type ${body.response_format.type}`);
  if (body.tools && body.tools.length > 0) unsupported('tools', '(function calling)');
  if (body.tool_choice !== undefined && body.tool_choice !== null && body.tool_choice !== 'none')
    unsupported('tool_choice', JSON.stringify(body.tool_choice));
  if (body.stream_options && !body.stream)
    throw badRequest('stream_options is only allowed when stream is true', 'stream_options');

  let count = 0;
  for (const m of body.messages)
    if (Array.isArray(m.content)) count += m.content.filter((p) => p.type === 'image_url').length;
  if (count > limits.maxImages) {
    throw badRequest(
      `the request has ${count} images; this server accepts at most ${limits.maxImages} per request (--max-images)`,
      'messages',
      'too_many_images',
    );
  }

  const images: ImageRef[] = [];
  const messages: ChatMessage[] = body.messages.map((m, i) => {
    const role = m.role === 'developer' ? 'system' : m.role;
    if (typeof m.content === 'string') return { role, content: m.content };
    const parts: ContentPart[] = m.content.map((p, j) => {
      if (p.type === 'text') return { type: 'text', text: p.text };
      if (m.role !== 'user')
        throw badRequest(`images can only be attached to user messages`, `messages[${i}].content[${j}]`);
      images.push({ url: p.image_url.url, param: `messages[${i}].content[${j}].image_url.url` });
      return { type: 'image' };
    });
    return { role, content: parts };
  });
  const last = body.messages[body.messages.length - 1];
  if (last?.role !== 'user')
    throw badRequest(
      `the last message must be from the user, got ${JSON.stringify(last?.role)}`,
      `messages[${body.messages.length - 1}].role`,
    );

  if (
    body.max_tokens !== undefined &&
    body.max_tokens !== null &&
    body.max_completion_tokens !== undefined &&
    body.max_completion_tokens !== null &&
    body.max_tokens !== body.max_completion_tokens
  ) {
    throw badRequest('max_tokens and max_completion_tokens disagree; give one of them', 'max_completion_tokens');
  }
  const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? undefined;
  const param = body.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens';
  if (maxTokens !== undefined && maxTokens > limits.contextWindow) {
    throw badRequest(
      `${param} is ${maxTokens}; this model's context window is ${limits.contextWindow} tokens, prompt included`,
      param,
      'context_length_exceeded',
    );
  }
  const stop = body.stop == null ? undefined : typeof body.stop === 'string' ? [body.stop] : body.stop;
  const job: TranslatedRequest['job'] = {
    messages,
    stream: body.stream === true,
    n: body.n ?? 1,
    ...(maxTokens !== undefined ? { max_tokens: maxTokens } : {}),
    ...(body.temperature != null ? { temperature: body.temperature } : {}),
    ...(body.top_p != null ? { top_p: body.top_p } : {}),
    ...(body.top_k != null ? { top_k: body.top_k } : {}),
    ...(body.repetition_penalty != null ? { repetition_penalty: body.repetition_penalty } : {}),
    ...(body.seed != null ? { seed: body.seed } : {}),
    ...(stop && stop.length > 0 ? { stop } : {}),
  };
  return {
    job,
    images,
    stream: body.stream === true,
    includeUsage: body.stream === true && body.stream_options?.include_usage === true,
  };
}
