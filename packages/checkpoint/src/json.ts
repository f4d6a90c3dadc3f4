/**
 * A strict JSON parser for checkpoint headers and index files. Unlike `JSON.parse` it reports
 * duplicate keys (which `JSON.parse` resolves silently, last one wins), keeps numbers as their
 * source text (so `1.5`, `-1`, `1e3` and 20-digit integers can be told apart exactly), stores
 * objects in `Map`s (no prototype is ever touched, whatever the key) and bounds nesting depth.
 */

export class JsonNumber {
  constructor(readonly text: string) {}
}

export type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | Map<string, JsonValue>;

/** Thrown by the strict parser for malformed JSON, a duplicate key or nesting past the depth cap; says where. */
export class JsonSyntaxError extends Error {
  constructor(
    message: string,
    readonly position: number,
    readonly duplicateKey?: string,
  ) {
    super(message);
  }
}

const MAX_DEPTH = 64;
const INTEGER = /^(0|[1-9][0-9]*)$/;

/** The non-negative integer a JSON number denotes, as a BigInt; undefined for any other number. */
export function jsonUnsignedInteger(v: JsonValue | undefined): bigint | undefined {
  if (!(v instanceof JsonNumber) || !INTEGER.test(v.text)) return undefined;
  return BigInt(v.text);
}

/** Describes a JSON value's type for error messages. */
export function jsonTypeName(v: JsonValue | undefined): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (v instanceof JsonNumber) return `number ${v.text.length > 40 ? `${v.text.slice(0, 40)}…` : v.text}`;
  if (v instanceof Map) return 'object';
  if (Array.isArray(v)) return 'array';
  return typeof v === 'string' ? `string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}` : typeof v;
}

/** Parses `text` as one JSON value (surrounding JSON whitespace allowed). Throws JsonSyntaxError. */
export function parseJson(text: string): JsonValue {
  let i = 0;
  const n = text.length;

  const fail = (msg: string, at = i): never => {
    throw new JsonSyntaxError(`${msg} at position ${at}`, at);
  };
  const ws = () => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
  };

  const parseString = (): string => {
    // at the opening quote
    i++;
    let out = '';
    let start = i;
    for (;;) {
      if (i >= n) fail('unterminated string');
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        out += text.slice(start, i);
        i++;
        return out;
      }
      if (c < 0x20) fail('control character in string');
      if (c >= 0xd800 && c <= 0xdfff) {
        const ok = c <= 0xdbff && i + 1 < n && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00;
        if (!ok) fail('lone surrogate in string');
        i += 2;
        continue;
      }
      if (c !== 0x5c) {
        i++;
        continue;
      }
      out += text.slice(start, i);
      i++;
      if (i >= n) fail('unterminated escape');
      const e = text[i];
      i++;
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          const hex = (at: number): number => {
            const h = text.slice(at, at + 4);
            if (!/^[0-9a-fA-F]{4}$/.test(h)) fail('bad \\u escape', at);
            return parseInt(h, 16);
          };
          const u = hex(i);
          i += 4;
          if (u >= 0xd800 && u <= 0xdbff) {
            if (text[i] !== '\\' || text[i + 1] !== 'u') fail('lone surrogate escape');
            const lo = hex(i + 2);
            if (lo < 0xdc00 || lo > 0xdfff) fail('lone surrogate escape');
            i += 6;
            out += String.fromCharCode(u, lo);
          } else if (u >= 0xdc00 && u <= 0xdfff) {
            fail('lone surrogate escape');
          } else {
            out += String.fromCharCode(u);
          }
          break;
        }
        default:
          fail(`bad escape \\${e}`, i - 1);
      }
      start = i;
    }
  };

  const NUMBER = /-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
  const parseNumber = (): JsonNumber => {
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m || m[0].length === 0) return fail('bad number');
    i += m[0].length;
    return new JsonNumber(m[0]);
  };

  const literal = (word: string, value: JsonValue): JsonValue => {
    if (text.startsWith(word, i)) {
      i += word.length;
      return value;
    }
    return fail('unexpected token');
  };

  const parseValue = (depth: number): JsonValue => {
    if (depth > MAX_DEPTH) fail(`nesting deeper than ${MAX_DEPTH}`);
    ws();
    if (i >= n) fail('unexpected end of input');
    const c = text[i];
    if (c === '{') {
      i++;
      const obj = new Map<string, JsonValue>();
      ws();
      if (text[i] === '}') {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail('expected a string key');
        const keyAt = i;
        const key = parseString();
        if (obj.has(key)) {
          throw new JsonSyntaxError(`duplicate key ${JSON.stringify(key)} at position ${keyAt}`, keyAt, key);
        }
        ws();
        if (text[i] !== ':') fail("expected ':'");
        i++;
        obj.set(key, parseValue(depth + 1));
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return obj;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === '[') {
      i++;
      const arr: JsonValue[] = [];
      ws();
      if (text[i] === ']') {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(parseValue(depth + 1));
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return arr;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return parseString();
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return parseNumber();
    if (c === 't') return literal('true', true);
    if (c === 'f') return literal('false', false);
    if (c === 'n') return literal('null', null);
    return fail('unexpected token');
  };

  const v = parseValue(0);
  ws();
  if (i !== n) fail('trailing characters after the JSON value');
  return v;
}

/** Maximum nesting depth of {@link parseJson} and {@link parsePlainJson}. */
export const MAX_JSON_DEPTH = MAX_DEPTH;

/**
 * Parses JSON text into plain JavaScript values, like `JSON.parse`, but with the strict parser's
 * guarantees: nesting deeper than {@link MAX_JSON_DEPTH} and duplicate keys are syntax errors
 * (`JsonSyntaxError`), and a `__proto__` key becomes an own property (no prototype is changed).
 * Numbers become JavaScript numbers. For config files (`config.json`, `generation_config.json`, …).
 */
export function parsePlainJson(text: string): unknown {
  const toPlain = (v: JsonValue): unknown => {
    if (v instanceof JsonNumber) return Number(v.text);
    if (Array.isArray(v)) return v.map(toPlain);
    if (v instanceof Map) {
      const o: Record<string, unknown> = {};
      for (const [k, x] of v) {
        Object.defineProperty(o, k, { value: toPlain(x), enumerable: true, writable: true, configurable: true });
      }
      return o;
    }
    return v;
  };
  return toPlain(parseJson(text));
}
