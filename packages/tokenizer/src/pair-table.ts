/**
 * Open-addressing hash map from an ordered pair of token ids (a, b) to a merged id — the BPE merge
 * table. Both SentencePiece (built from the pieces: "a+b is a piece") and tokenizer.json (built from
 * `merges`) use it. Integer keys avoid allocating substrings on the hot path.
 */
export class PairTable {
  private keysA: Int32Array;
  private keysB: Int32Array;
  private vals: Int32Array;
  private aux: Int32Array;
  private mask: number;
  private count = 0;

  constructor(expected = 1024) {
    let cap = 16;
    while (cap < expected * 2) cap *= 2;
    this.keysA = new Int32Array(cap).fill(-1);
    this.keysB = new Int32Array(cap);
    this.vals = new Int32Array(cap);
    this.aux = new Int32Array(cap);
    this.mask = cap - 1;
  }

  get size(): number {
    return this.count;
  }

  private slot(a: number, b: number): number {
    // Multiplicative hashing of the pair; good enough for ids < 2^31.
    let h = Math.imul(a, 0x9e3779b1) ^ Math.imul(b + 0x7f4a7c15, 0x85ebca77);
    h ^= h >>> 15;
    return h & this.mask;
  }

  /** Inserts (a, b) → value (with an auxiliary int, e.g. a merge rank). Keeps the first insert. */
  set(a: number, b: number, value: number, aux = 0): boolean {
    if ((this.count + 1) * 2 > this.keysA.length) this.rehash();
    let s = this.slot(a, b);
    for (;;) {
      const ka = this.keysA[s]!;
      if (ka === -1) {
        this.keysA[s] = a;
        this.keysB[s] = b;
        this.vals[s] = value;
        this.aux[s] = aux;
        this.count++;
        return true;
      }
      if (ka === a && this.keysB[s] === b) return false;
      s = (s + 1) & this.mask;
    }
  }

  /** The value for (a, b), or -1. */
  get(a: number, b: number): number {
    let s = this.slot(a, b);
    for (;;) {
      const ka = this.keysA[s]!;
      if (ka === -1) return -1;
      if (ka === a && this.keysB[s] === b) return this.vals[s]!;
      s = (s + 1) & this.mask;
    }
  }

  /** The auxiliary int stored with (a, b); only meaningful when get(a, b) ≥ 0. */
  getAux(a: number, b: number): number {
    let s = this.slot(a, b);
    for (;;) {
      const ka = this.keysA[s]!;
      if (ka === -1) return -1;
      if (ka === a && this.keysB[s] === b) return this.aux[s]!;
      s = (s + 1) & this.mask;
    }
  }

  private rehash(): void {
    const oa = this.keysA;
    const ob = this.keysB;
    const ov = this.vals;
    const ox = this.aux;
    const cap = oa.length * 2;
    this.keysA = new Int32Array(cap).fill(-1);
    this.keysB = new Int32Array(cap);
    this.vals = new Int32Array(cap);
    this.aux = new Int32Array(cap);
    this.mask = cap - 1;
    this.count = 0;
    for (let i = 0; i < oa.length; i++) if (oa[i] !== -1) this.set(oa[i]!, ob[i]!, ov[i]!, ox[i]!);
  }
}
