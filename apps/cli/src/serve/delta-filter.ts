/**
 * Turns the model's raw text deltas into what a client may see, so that the streamed deltas join
 * to exactly the non-streamed answer: nothing from a stop string on (a delta that might be the
 * start of a stop string is held back until the next one decides), no leading whitespace, and no
 * trailing whitespace (held until more text follows it).
 */
export class DeltaFilter {
  private held = '';
  private started = false;
  private stoppedAt = false;
  private out = '';

  constructor(private readonly stops: readonly string[] = []) {}

  /** True once a stop string was seen: everything after it is dropped. */
  get stopped(): boolean {
    return this.stoppedAt;
  }

  /** Everything emitted so far. */
  get text(): string {
    return this.out;
  }

  /** Adds raw text; returns what can be emitted now (possibly ''). */
  push(delta: string): string {
    if (this.stoppedAt || delta === '') return '';
    let buf = this.held + delta;
    if (!this.started) {
      buf = buf.replace(/^\s+/, '');
      if (buf === '') {
        this.held = '';
        return '';
      }
      this.started = true;
    }
    // The stop string that completes first wins (as generation stops at the first one it sees).
    let cut = -1;
    let cutEnd = Number.POSITIVE_INFINITY;
    for (const s of this.stops) {
      const i = buf.indexOf(s);
      if (i < 0) continue;
      const end = i + s.length;
      if (end < cutEnd || (end === cutEnd && i < cut)) {
        cut = i;
        cutEnd = end;
      }
    }
    if (cut >= 0) {
      this.stoppedAt = true;
      this.held = '';
      return this.emit(buf.slice(0, cut).replace(/\s+$/, ''));
    }
    let hold = buf.length;
    // trailing whitespace
    const ws = /\s+$/.exec(buf);
    if (ws) hold = ws.index;
    // the longest suffix that is a proper prefix of a stop string
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, buf.length); k > 0; k--) {
        if (buf.endsWith(s.slice(0, k))) {
          hold = Math.min(hold, buf.length - k);
          break;
        }
      }
    }
    // whitespace right before a held stop prefix is trailing too, until the prefix is resolved
    while (hold > 0 && /\s/.test(buf[hold - 1] ?? '')) hold--;
    this.held = buf.slice(hold);
    return this.emit(buf.slice(0, hold));
  }

  /** The generation ended: returns the held text that is not a stop string and not trailing space. */
  end(): string {
    if (this.stoppedAt) return '';
    const rest = this.held.replace(/\s+$/, '');
    this.held = '';
    return this.emit(rest);
  }

  private emit(s: string): string {
    this.out += s;
    return s;
  }
}
