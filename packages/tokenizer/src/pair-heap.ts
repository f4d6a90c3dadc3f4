/**
 * 4-ary min-heap of candidate merges, ordered by (`key`, `pos`): the smaller key first, ties to
 * the smaller position (the leftmost pair). SentencePiece's BPE agenda pops the highest piece score
 * and breaks ties by the smaller left index (bpe_model.cc `SymbolPairComparator`); pushing
 * `key = -score` gives exactly that order. Hugging Face BPE pops the lowest merge rank, ties to
 * the smaller position — `key = rank`. Entries live inline in typed arrays indexed by heap slot
 * (no indirection, cache-friendly) and the arrays are reused between calls, so a merge costs
 * O(log n) and encoding is O(n log n) (reliability checklist B20).
 */
export class PairHeap {
  private key = new Float64Array(64);
  private pos = new Int32Array(64);
  private right = new Int32Array(64);
  private aux = new Int32Array(64);
  private id = new Int32Array(64);
  private count = 0;

  /** Fields of the entry returned by the last successful `pop()`. */
  topPos = 0;
  topRight = 0;
  /** SentencePiece: combined length of the pair when pushed; HF: the merged id. */
  topAux = 0;
  /** The merged piece id. */
  topId = 0;

  reset(capacityHint: number): void {
    this.count = 0;
    if (this.key.length < capacityHint) this.grow(capacityHint);
  }

  get size(): number {
    return this.count;
  }

  private grow(min: number): void {
    let cap = this.key.length;
    while (cap < min) cap *= 2;
    const key = new Float64Array(cap);
    key.set(this.key);
    this.key = key;
    const g = (a: Int32Array<ArrayBuffer>): Int32Array<ArrayBuffer> => {
      const b = new Int32Array(cap);
      b.set(a);
      return b;
    };
    this.pos = g(this.pos);
    this.right = g(this.right);
    this.aux = g(this.aux);
    this.id = g(this.id);
  }

  push(key: number, pos: number, right: number, aux: number, id: number): void {
    if (this.count >= this.key.length) this.grow(this.count + 1);
    const K = this.key;
    const P = this.pos;
    const R = this.right;
    const A = this.aux;
    const I = this.id;
    let i = this.count++;
    while (i > 0) {
      const parent = (i - 1) >> 2;
      const kp = K[parent]!;
      if (kp < key || (kp === key && P[parent]! <= pos)) break;
      K[i] = kp;
      P[i] = P[parent]!;
      R[i] = R[parent]!;
      A[i] = A[parent]!;
      I[i] = I[parent]!;
      i = parent;
    }
    K[i] = key;
    P[i] = pos;
    R[i] = right;
    A[i] = aux;
    I[i] = id;
  }

  /** Removes the best pair into `top*`; false when empty. */
  pop(): boolean {
    if (this.count === 0) return false;
    const K = this.key;
    const P = this.pos;
    const R = this.right;
    const A = this.aux;
    const I = this.id;
    this.topPos = P[0]!;
    this.topRight = R[0]!;
    this.topAux = A[0]!;
    this.topId = I[0]!;
    const n = --this.count;
    if (n === 0) return true;
    const key = K[n]!;
    const pos = P[n]!;
    const right = R[n]!;
    const aux = A[n]!;
    const id = I[n]!;
    let i = 0;
    for (;;) {
      // 4-ary heap: half the depth of a binary heap, and the children share a cache line.
      const l = 4 * i + 1;
      if (l >= n) break;
      let c = l;
      let kc = K[l]!;
      const end = Math.min(l + 4, n);
      for (let j = l + 1; j < end; j++) {
        const kj = K[j]!;
        if (kj < kc || (kj === kc && P[j]! < P[c]!)) {
          c = j;
          kc = kj;
        }
      }
      if (kc > key || (kc === key && P[c]! > pos)) break;
      K[i] = kc;
      P[i] = P[c]!;
      R[i] = R[c]!;
      A[i] = A[c]!;
      I[i] = I[c]!;
      i = c;
    }
    K[i] = key;
    P[i] = pos;
    R[i] = right;
    A[i] = aux;
    I[i] = id;
    return true;
  }
}
