/**
 * @owlet/tokenizer — the LLaMA SentencePiece tokenizer (tokenizer.model and tokenizer.json),
 * mPLUG-Owl2 / mPLUG-Owl image tokens and chat templates. No tfjs, no Node built-ins.
 */
export { TokenizerError, TokenizerErrorCode, isTokenizerError } from './errors.js';
export { decodeModelProto, PieceType } from './model-proto.js';
export type { ModelProto, ModelType, NormalizerSpec, SentencePiece, TrainerSpec } from './model-proto.js';
export { SentencePieceModel, SPACE_SYMBOL } from './sentencepiece.js';
export { HfBpeModel } from './tokenizer-json.js';
export type { AddedTokenSpec, TokenizerBackend } from './backend.js';
export { LlamaTokenizer } from './llama-tokenizer.js';
export type { DecodeOptions, EncodeOptions, LlamaTokenizerOptions, PromptPart, TokenIds } from './llama-tokenizer.js';
export { StreamingDecoder, TextStreamer } from './streaming.js';
export type { TextStreamerOptions } from './streaming.js';
export {
  DEFAULT_IMAGE_TOKEN,
  IGNORE_INDEX,
  IMAGE_TOKEN_INDEX,
  V1_MEDIA_TOKEN,
  V1_MEDIA_TOKEN_ID,
  V1_MEDIA_TOKENS_PER_IMAGE,
  tokenizePromptV1,
  tokenizePromptsV1,
  tokenizeWithImages,
} from './images.js';
export type {
  BatchEncoding,
  Prompt,
  TokenizePromptV1Options,
  TokenizePromptsV1Options,
  TokenizeWithImagesOptions,
} from './images.js';
export {
  CONVERSATION_TEMPLATES,
  apply_chat_template,
  buildTrainingExample,
  conversationGetPrompt,
  getTemplate,
  renderConversation,
} from './templates.js';
export type {
  ApplyChatTemplateOptions,
  ChatMessage,
  ContentPart,
  ConversationTemplate,
  LlavaTurn,
  RawMessage,
  RenderedPrompt,
  SepStyle,
  TemplateName,
  TrainingExample,
} from './templates.js';
export { buildTrainingExampleV1 } from './training-v1.js';
export type { BuildTrainingExampleV1Options, TrainingExampleV1 } from './training-v1.js';
