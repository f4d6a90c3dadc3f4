/**
 * What `LlamaTokenizer` needs from a vocabulary + algorithm: encode one chunk of plain text (no
 * special-token parsing), decode a run of ids, and id ↔ piece lookups. Implemented by
 * `SentencePieceModel` (tokenizer.model) and `HfBpeModel` (tokenizer.json).
 */
export interface AddedTokenSpec {
  id: number;
  content: string;
  special: boolean;
  lstrip: boolean;
  rstrip: boolean;
  single_word: boolean;
  normalized: boolean;
}

export interface TokenizerBackend {
  readonly vocabSize: number;
  /** -1 when absent. */
  readonly unkId: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  /** Encodes plain text; `atStart` is true when the chunk starts the input (Metaspace "first"). */
  encodeChunk(text: string, atStart: boolean): number[];
  /** Decodes ids that contain no special tokens the way the model's own decoder does. */
  decodeChunk(ids: number[]): string;
  idToPiece(id: number): string;
  /** The id of a piece string, or undefined. */
  lookup(piece: string): number | undefined;
  /** Throws TokenizerError('INVALID_TOKEN_ID') unless 0 ≤ id < vocabSize and integer. */
  checkId(id: number): void;
  /** Extra tokens declared by the file (tokenizer.json `added_tokens`); [] for tokenizer.model. */
  readonly addedTokens: readonly AddedTokenSpec[];
  /** Default BOS/EOS behaviour declared by the file (tokenizer.json post_processor), if any. */
  readonly template: { add_bos: boolean; add_eos: boolean } | null;
}
