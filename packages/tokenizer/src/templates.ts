/**
 * Conversation templates as data, and prompt rendering / training labels.
 *
 * | name         | source                                                 | system prompt emitted | roles            | after a user turn | after an answer |
 * |--------------|--------------------------------------------------------|-----------------------|------------------|-------------------|-----------------|
 * | `mplug_owl2` | mplug_owl2/conversation.py `conv_mplug_owl2` (TWO_NO_SYS) | no                 | USER / ASSISTANT | `" "`             | `"</s>"`        |
 * | `vicuna_v1`  | mplug_owl2/conversation.py `conv_vicuna_v1` (TWO)       | yes, then `" "`       | USER / ASSISTANT | `" "`             | `"</s>"`        |
 * | `mplug_owl`  | mPLUG-Owl v1 README / pipeline/interface.py            | yes, then `"\n"`      | Human / AI       | `"\n"`            | `"\n"`          |
 *
 * mPLUG-Owl2 glues the image tokens to the front of the first user message with no newline
 * (`"USER: <|image|>q ASSISTANT:"`); the training data path (`preprocess_multimodal`) puts a
 * `"\n"` after it. v1 emits one `"Human: <image>"` line per image before the user line.
 *
 * Rendering returns both the prompt string (identical to the official `get_prompt()`) and
 * `parts`: only template text is trusted, so user text that contains `</s>` or the image marker
 * stays literal when tokenized from `parts` (reliability checklist B24).
 */
import { TokenizerError, TokenizerErrorCode } from './errors.js';
import {
  DEFAULT_IMAGE_TOKEN,
  IGNORE_INDEX,
  IMAGE_TOKEN_INDEX,
  tokenizePromptV1,
  tokenizeWithImages,
  V1_MEDIA_TOKEN,
} from './images.js';
import type { LlamaTokenizer, PromptPart } from './llama-tokenizer.js';

export type SepStyle = 'TWO' | 'TWO_NO_SYS' | 'LINES';

export interface ConversationTemplate {
  readonly name: string;
  readonly system: string;
  /** [user role, assistant role]. */
  readonly roles: readonly [string, string];
  readonly sep_style: SepStyle;
  /** Separator after a user message (TWO*) / between lines (LINES). */
  readonly sep: string;
  /** Separator after an assistant message. */
  readonly sep2: string;
  readonly image_token: string;
  /** Which model's image slots `apply_chat_template({ tokenize: true })` produces. */
  readonly image_slots: 'owl2' | 'owl1';
}

export const CONVERSATION_TEMPLATES: Readonly<Record<'mplug_owl2' | 'vicuna_v1' | 'mplug_owl', ConversationTemplate>> =
  Object.freeze({
    mplug_owl2: Object.freeze({
      name: 'mplug_owl2',
      // Defined by conv_mplug_owl2 but never emitted (TWO_NO_SYS).
      system:
        "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the human's questions.",
      roles: ['USER', 'ASSISTANT'] as const,
      sep_style: 'TWO_NO_SYS' as const,
      sep: ' ',
      sep2: '</s>',
      image_token: DEFAULT_IMAGE_TOKEN,
      image_slots: 'owl2' as const,
    }),
    vicuna_v1: Object.freeze({
      name: 'vicuna_v1',
      system:
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.",
      roles: ['USER', 'ASSISTANT'] as const,
      sep_style: 'TWO' as const,
      sep: ' ',
      sep2: '</s>',
      image_token: DEFAULT_IMAGE_TOKEN,
      image_slots: 'owl2' as const,
    }),
    mplug_owl: Object.freeze({
      name: 'mplug_owl',
      system:
        "The following is a conversation between a curious human and AI assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.",
      roles: ['Human', 'AI'] as const,
      sep_style: 'LINES' as const,
      sep: '\n',
      sep2: '\n',
      image_token: V1_MEDIA_TOKEN,
      image_slots: 'owl1' as const,
    }),
  });

export type TemplateName = keyof typeof CONVERSATION_TEMPLATES;

export function getTemplate(t: TemplateName | ConversationTemplate): ConversationTemplate {
  if (typeof t !== 'string') return t;
  const tpl = CONVERSATION_TEMPLATES[t];
  if (tpl === undefined) {
    throw new TokenizerError(
      TokenizerErrorCode.INVALID_CONVERSATION,
      `unknown template "${String(t)}"; expected one of ${Object.keys(CONVERSATION_TEMPLATES).join(', ')}`,
    );
  }
  return tpl;
}

// ------------------------------------------------------------------ messages

export type ContentPart =
  | { type: 'text'; text: string }
  | { type: 'image' }
  | { type: 'image_url'; image_url: unknown };
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string | readonly ContentPart[] | null;
}

interface Turn {
  role: 0 | 1;
  text: string | null;
  images: number;
}

function toTurns(messages: readonly ChatMessage[]): Turn[] {
  const turns: Turn[] = [];
  for (const [i, m] of messages.entries()) {
    if (m.role === 'system') {
      throw new TokenizerError(
        TokenizerErrorCode.INVALID_CONVERSATION,
        `messages[${i}] has role "system": these templates use a fixed system prompt (pass a custom ConversationTemplate to change it)`,
      );
    }
    const role = m.role === 'user' ? 0 : m.role === 'assistant' ? 1 : -1;
    if (role < 0)
      throw new TokenizerError(
        TokenizerErrorCode.INVALID_CONVERSATION,
        `messages[${i}] has role ${JSON.stringify(m.role)}; expected "user" or "assistant"`,
      );
    const expected = turns.length % 2;
    if (role !== expected) {
      throw new TokenizerError(
        TokenizerErrorCode.INVALID_CONVERSATION,
        `messages[${i}] is from "${m.role}" but the conversation expects "${expected === 0 ? 'user' : 'assistant'}" (turns must alternate, starting with the user)`,
      );
    }
    let text: string | null = null;
    let images = 0;
    if (typeof m.content === 'string') text = m.content;
    else if (Array.isArray(m.content)) {
      const texts: string[] = [];
      for (const c of m.content as readonly ContentPart[]) {
        if (c.type === 'text') texts.push(c.text);
        else if (c.type === 'image' || c.type === 'image_url') images++;
        else
          throw new TokenizerError(
            TokenizerErrorCode.INVALID_CONVERSATION,
            `messages[${i}] has a content part of unknown type ${JSON.stringify((c as { type: unknown }).type)}`,
          );
      }
      text = texts.join('\n');
    }
    if (role === 1 && images > 0)
      throw new TokenizerError(
        TokenizerErrorCode.INVALID_CONVERSATION,
        `messages[${i}]: assistant messages cannot carry images`,
      );
    turns.push({ role: role as 0 | 1, text, images });
  }
  return turns;
}

export interface RenderedPrompt {
  /** The prompt string, as the official `conv.get_prompt()` builds it. */
  prompt: string;
  /** The same text; only template text (and image markers it placed) is trusted. */
  parts: PromptPart[];
  /** Number of images (image slots) in the prompt. */
  n_images: number;
}

/**
 * Renders a conversation. With `add_generation_prompt` (default true) and a last message from the
 * user, an empty assistant turn is appended (`"… ASSISTANT:"`, `"… AI: "`).
 */
export function renderConversation(
  messages: readonly ChatMessage[],
  template: TemplateName | ConversationTemplate = 'mplug_owl2',
  options: { add_generation_prompt?: boolean } = {},
): RenderedPrompt {
  const tpl = getTemplate(template);
  const turns = toTurns(messages);
  if ((options.add_generation_prompt ?? true) && (turns.at(-1)?.role ?? 0) === 0) {
    if (turns.length > 0) turns.push({ role: 1, text: null, images: 0 });
  }
  const parts: PromptPart[] = [];
  const T = (text: string): void => void parts.push({ text, trusted: true });
  const U = (text: string): void => void parts.push({ text, trusted: false });
  let nImages = 0;
  if (tpl.sep_style === 'LINES') {
    T(tpl.system);
    for (const t of turns) {
      for (let k = 0; k < t.images; k++) T(`${tpl.sep}${tpl.roles[0]}: ${tpl.image_token}`);
      nImages += t.images;
      T(`${tpl.sep}${tpl.roles[t.role]}: `);
      if (t.text) U(t.text);
    }
  } else {
    if (tpl.sep_style === 'TWO') T(tpl.system + tpl.sep);
    turns.forEach((t, i) => {
      const img = tpl.image_token.repeat(t.images);
      nImages += t.images;
      if (t.text || t.images > 0) {
        T(`${tpl.roles[t.role]}: ${img}`);
        if (t.text) U(t.text);
        T(i % 2 === 0 ? tpl.sep : tpl.sep2);
      } else {
        T(`${tpl.roles[t.role]}:`);
      }
    });
  }
  const merged: PromptPart[] = [];
  for (const p of parts) {
    if (p.text.length === 0) continue;
    const last = merged[merged.length - 1];
    if (last && last.trusted === p.trusted) last.text += p.text;
    else merged.push({ ...p });
  }
  return { prompt: merged.map((p) => p.text).join(''), parts: merged, n_images: nImages };
}

export interface ApplyChatTemplateOptions {
  template?: TemplateName | ConversationTemplate;
  add_generation_prompt?: boolean;
  /** false (default): return the prompt string; true: return ids with image slots. */
  tokenize?: boolean;
  /** v1 only: visual tokens per image (65). */
  media_tokens_per_image?: number;
}

/**
 * HF-style `apply_chat_template`. With `tokenize: true` the ids contain one −200 per image
 * (mPLUG-Owl2 templates) or 65 × −1 per image (`mplug_owl`), and user text is always literal.
 */
export function apply_chat_template(
  tokenizer: LlamaTokenizer,
  messages: readonly ChatMessage[],
  options: ApplyChatTemplateOptions & { tokenize: true },
): number[];
export function apply_chat_template(
  tokenizer: LlamaTokenizer,
  messages: readonly ChatMessage[],
  options?: ApplyChatTemplateOptions,
): string;
export function apply_chat_template(
  tokenizer: LlamaTokenizer,
  messages: readonly ChatMessage[],
  options: ApplyChatTemplateOptions = {},
): string | number[] {
  const tpl = getTemplate(options.template ?? 'mplug_owl2');
  const r = renderConversation(messages, tpl, options);
  if (!options.tokenize) return r.prompt;
  if (tpl.image_slots === 'owl1') {
    return tokenizePromptV1(tokenizer, r.parts, {
      n_images: r.n_images,
      media_token: tpl.image_token,
      ...(options.media_tokens_per_image !== undefined
        ? { media_tokens_per_image: options.media_tokens_per_image }
        : {}),
    });
  }
  return tokenizeWithImages(tokenizer, r.parts, { n_images: r.n_images, image_token: tpl.image_token });
}

// ------------------------------------------------------------------ training labels

export interface LlavaTurn {
  from: 'human' | 'gpt';
  value: string;
}

export interface TrainingExample {
  input_ids: number[];
  /** −100 on every token that is not part of an answer (or its `</s>`). */
  labels: number[];
  prompt: string;
  /** false when the official length check failed and the whole sample was masked. */
  ok: boolean;
}

/**
 * mPLUG-Owl2 `preprocess_multimodal` + `preprocess_v1` (mplug_owl2/train/train.py) for one
 * sample in LLaVA format. The prompt string is tokenized exactly as the official code does
 * (HF-slow with special tokens parsed; training data is trusted). Labels: BOS and each round's
 * instruction (`len(tok(user_part + " ASSISTANT: ")) − 2` tokens) are −100; the answer and its
 * `</s>` are kept; everything after the last round is −100; a length mismatch masks everything.
 */
export function buildTrainingExample(
  tokenizer: LlamaTokenizer,
  conversation: readonly LlavaTurn[],
  options: { template?: TemplateName | ConversationTemplate; has_image?: boolean; model_max_length?: number } = {},
): TrainingExample {
  const tpl = getTemplate(options.template ?? 'vicuna_v1');
  if (tpl.sep_style === 'LINES') {
    throw new TokenizerError(
      TokenizerErrorCode.INVALID_CONVERSATION,
      `preprocess_v1 supports the TWO / TWO_NO_SYS templates, not "${tpl.name}"`,
    );
  }
  const marker = tpl.image_token;
  let source = conversation.map((s) => ({ ...s }));
  // preprocess_multimodal: move the image token to the front, followed by "\n".
  for (const s of source) {
    if (s.value.includes(marker)) {
      s.value = `${marker}\n${s.value.replaceAll(marker, '').trim()}`.trim();
    }
  }
  const hasImage = options.has_image ?? source.some((s) => s.value.includes(marker));
  if (source.length > 0 && source[0]?.from !== 'human') source = source.slice(1);
  let prompt = tpl.sep_style === 'TWO' ? tpl.system + tpl.sep : '';
  const seps = [tpl.sep, tpl.sep2];
  source.forEach((s, j) => {
    const role = s.from === 'human' ? 0 : 1;
    if (role !== j % 2)
      throw new TokenizerError(
        TokenizerErrorCode.INVALID_CONVERSATION,
        `conversation[${j}] is from "${s.from}", expected ${j % 2 === 0 ? 'human' : 'gpt'}`,
      );
    prompt += s.value ? `${tpl.roles[role]}: ${s.value}${seps[j % 2]}` : `${tpl.roles[role]}:`;
  });

  const count = (t: string): number => t.split(marker).length - 1;
  const tok = (t: string): number[] =>
    hasImage
      ? tokenizeWithImages(tokenizer, t, { n_images: count(t), image_token: marker })
      : tokenizer.encode(t, { split_special_tokens: false });
  const maxLen = options.model_max_length ?? 2048;
  let inputIds = tok(prompt);
  if (!hasImage && inputIds.length > maxLen) inputIds = inputIds.slice(0, maxLen);
  const labels = inputIds.slice();
  const pad = tokenizer.pad_token_id ?? tokenizer.unk_token_id ?? 0;
  const totalLen = inputIds.filter((id) => id !== pad).length;
  const sep = `${tpl.sep + tpl.roles[1]}: `;
  let cur = 1;
  for (let k = 0; k < Math.min(cur, labels.length); k++) labels[k] = IGNORE_INDEX;
  for (const rou of prompt.split(tpl.sep2)) {
    if (rou === '') break;
    const p = rou.split(sep);
    const [before] = p;
    if (p.length !== 2 || before === undefined) break;
    const instruction = before + sep;
    const roundLen = tok(rou).length;
    const instructionLen = tok(instruction).length - 2;
    for (let k = cur; k < cur + instructionLen && k < labels.length; k++) labels[k] = IGNORE_INDEX;
    cur += roundLen;
  }
  for (let k = cur; k < labels.length; k++) labels[k] = IGNORE_INDEX;
  let ok = true;
  if (cur < maxLen && cur !== totalLen) {
    labels.fill(IGNORE_INDEX);
    ok = false;
  }
  return { input_ids: inputIds, labels, prompt, ok };
}

export { IMAGE_TOKEN_INDEX, IGNORE_INDEX };

/** A message in the official `Conversation.messages` form: text, the gradio tuple `[text, image, mode]`, or null. */
export type RawMessage = readonly [string, string | readonly [string, unknown, unknown] | null];

/**
 * Literal port of `Conversation.get_prompt()` for the TWO / TWO_NO_SYS styles (mplug_owl2/
 * conversation.py) over raw messages whose text may already contain `<|image|>` (trusted).
 * A tuple first message has its image tokens removed, is stripped, and gets one image token in front.
 */
export function conversationGetPrompt(
  template: TemplateName | ConversationTemplate,
  messages: readonly RawMessage[],
): string {
  const tpl = getTemplate(template);
  if (tpl.sep_style === 'LINES') {
    throw new TokenizerError(
      TokenizerErrorCode.INVALID_CONVERSATION,
      `conversationGetPrompt supports TWO / TWO_NO_SYS templates, not "${tpl.name}"`,
    );
  }
  let msgs: Array<[string, string | null]> = messages.map(([r, m]) => [
    r,
    m === null ? null : typeof m === 'string' ? m : m[0],
  ]);
  const first = messages[0];
  if (first && Array.isArray(first[1])) {
    const init = (first[1] as readonly [string, unknown, unknown])[0].replaceAll(tpl.image_token, '').trim();
    msgs = [[first[0], tpl.image_token + init], ...msgs.slice(1)];
  }
  const seps = [tpl.sep, tpl.sep2];
  let ret = tpl.sep_style === 'TWO' ? tpl.system + seps[0] : '';
  msgs.forEach(([role, m], i) => {
    ret += m ? `${role}: ${m}${seps[i % 2]}` : `${role}:`;
  });
  return ret;
}
