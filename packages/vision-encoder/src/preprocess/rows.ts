/**
 * Lazily evaluated, row-addressed images. Every preprocessing stage (mode conversion, padding to a
 * square, Pillow resampling) is a {@link RowSource}: it produces row `y` on demand from the rows of
 * the stage before it. Nothing ever holds a whole intermediate canvas, so the memory of a pipeline
 * is bounded by its output size and the resampling windows, not by the long-edge square that the
 * official pipeline builds (reliability checklist B26).
 *
 * A {@link Row} is a list of segments: dense bytes (a view into a buffer, no copy) or a constant
 * colour. Constant segments let padded and stretched rows be resampled in time independent of the
 * canvas width; equal rows are shared as the same object, which later stages exploit.
 */

/** One run of pixels `[x0, x1)` of a row: either a constant colour or interleaved bytes. */
export interface Segment {
  readonly x0: number;
  readonly x1: number;
  /** The colour (one byte per channel) when the run is constant, else null. */
  readonly color: Uint8Array | null;
  /** Interleaved bytes of the run when dense; pixel `x` is at `offset + (x - x0) * channels`. */
  readonly data: Uint8Array | null;
  readonly offset: number;
}

/** An immutable image row of `width` pixels with `channels` interleaved uint8 channels. */
export class Row {
  private denseCache: Uint8Array | null = null;

  private constructor(
    readonly width: number,
    readonly channels: number,
    readonly segments: readonly Segment[],
  ) {}

  /** A row backed by `data[offset … offset + width·channels)` (a view: the bytes are not copied). */
  static dense(data: Uint8Array, offset: number, width: number, channels: number): Row {
    return new Row(width, channels, [{ x0: 0, x1: width, color: null, data, offset }]);
  }

  /** A row of one colour. */
  static constant(color: Uint8Array, width: number): Row {
    return new Row(width, color.length, [{ x0: 0, x1: width, color, data: null, offset: 0 }]);
  }

  /** A row from segments that tile `[0, width)` in order (empty runs are dropped). */
  static fromSegments(width: number, channels: number, segments: Segment[]): Row {
    return new Row(
      width,
      channels,
      segments.filter((s) => s.x1 > s.x0),
    );
  }

  /** The colour when every pixel of the row is the same by construction, else null. */
  constColor(): Uint8Array | null {
    const s = this.segments;
    const seg = s[0];
    if (s.length === 1 && seg) {
      if (seg.color) return seg.color;
      if (this.width === 1 && seg.data) return seg.data.subarray(seg.offset, seg.offset + this.channels);
    }
    return null;
  }

  /** The single dense segment's buffer and offset, or null when the row has other segments. */
  denseView(): { data: Uint8Array; offset: number } | null {
    const s = this.segments;
    const seg = s[0];
    if (s.length === 1 && seg?.data) return { data: seg.data, offset: seg.offset };
    return null;
  }

  /** The row as `width·channels` contiguous bytes (materialised once for segmented rows). */
  toDense(): { data: Uint8Array; offset: number } {
    const v = this.denseView();
    if (v) return v;
    if (!this.denseCache) {
      const c = this.channels;
      const out = new Uint8Array(this.width * c);
      for (const seg of this.segments) {
        if (seg.color) {
          for (let x = seg.x0; x < seg.x1; x++) out.set(seg.color, x * c);
        } else if (seg.data) {
          out.set(seg.data.subarray(seg.offset, seg.offset + (seg.x1 - seg.x0) * c), seg.x0 * c);
        }
      }
      this.denseCache = out;
    }
    return { data: this.denseCache, offset: 0 };
  }

  /** Columns `[x0, x1)` of this row (shares the underlying bytes). */
  slice(x0: number, x1: number): Row {
    if (x0 === 0 && x1 === this.width) return this;
    const c = this.channels;
    const segs: Segment[] = [];
    for (const seg of this.segments) {
      const a = Math.max(seg.x0, x0);
      const b = Math.min(seg.x1, x1);
      if (b <= a) continue;
      segs.push({
        x0: a - x0,
        x1: b - x0,
        color: seg.color,
        data: seg.data,
        offset: seg.data ? seg.offset + (a - seg.x0) * c : 0,
      });
    }
    return new Row(x1 - x0, c, segs);
  }
}

/**
 * A lazily evaluated image. `row(y)` must be a pure function of `y` (it may be called again for a
 * row already produced) and may return the same object for equal rows.
 */
export interface RowSource {
  readonly width: number;
  readonly height: number;
  readonly channels: number;
  row(y: number): Row;
}

/** Rows of an interleaved uint8 buffer (views, no copy). */
export class BufferRows implements RowSource {
  constructor(
    readonly data: Uint8Array,
    readonly width: number,
    readonly height: number,
    readonly channels: number,
  ) {}

  row(y: number): Row {
    return Row.dense(this.data, y * this.width * this.channels, this.width, this.channels);
  }
}

/**
 * Applies a per-pixel conversion to every row of `src`. `convert(src, srcOffset, dst, n)` converts
 * `n` pixels. Constant rows stay constant (converted once) and repeated rows are converted once.
 */
export class MapRows implements RowSource {
  private lastIn: Row | null = null;
  private lastOut: Row | null = null;

  constructor(
    readonly src: RowSource,
    readonly channels: number,
    private readonly convert: (src: Uint8Array, srcOffset: number, dst: Uint8Array, n: number) => void,
  ) {}

  get width(): number {
    return this.src.width;
  }

  get height(): number {
    return this.src.height;
  }

  row(y: number): Row {
    const r = this.src.row(y);
    if (r === this.lastIn && this.lastOut) return this.lastOut;
    const segs: Segment[] = [];
    for (const seg of r.segments) {
      if (seg.color) {
        const color = new Uint8Array(this.channels);
        this.convert(seg.color, 0, color, 1);
        segs.push({ x0: seg.x0, x1: seg.x1, color, data: null, offset: 0 });
      } else if (seg.data) {
        const n = seg.x1 - seg.x0;
        const data = new Uint8Array(n * this.channels);
        this.convert(seg.data, seg.offset, data, n);
        segs.push({ x0: seg.x0, x1: seg.x1, color: null, data, offset: 0 });
      }
    }
    const out = Row.fromSegments(r.width, this.channels, segs);
    this.lastIn = r;
    this.lastOut = out;
    return out;
  }
}

/**
 * Pillow's `expand2square` as used by mPLUG-Owl2 (`mm_utils.py`), without the canvas: a square of
 * side max(W, H) filled with `background`, the source pasted at `(0, (W−H)//2)` when W > H or at
 * `((H−W)//2, 0)` when H > W. Background rows are one shared constant row.
 */
export class PadToSquare implements RowSource {
  readonly width: number;
  readonly height: number;
  readonly channels: number;
  private readonly bgRow: Row;
  private readonly offX: number;
  private readonly offY: number;

  constructor(
    readonly src: RowSource,
    readonly background: Uint8Array,
  ) {
    if (background.length !== src.channels) {
      throw new RangeError(`background has ${background.length} channels, the image ${src.channels}`);
    }
    const side = Math.max(src.width, src.height);
    this.width = side;
    this.height = side;
    this.channels = src.channels;
    this.offX = src.height > src.width ? Math.floor((src.height - src.width) / 2) : 0;
    this.offY = src.width > src.height ? Math.floor((src.width - src.height) / 2) : 0;
    this.bgRow = Row.constant(background, side);
  }

  row(y: number): Row {
    const sy = y - this.offY;
    if (sy < 0 || sy >= this.src.height) return this.bgRow;
    const r = this.src.row(sy);
    if (this.offX === 0 && r.width === this.width) return r;
    const segs: Segment[] = [{ x0: 0, x1: this.offX, color: this.background, data: null, offset: 0 }];
    for (const seg of r.segments) {
      segs.push({ ...seg, x0: seg.x0 + this.offX, x1: seg.x1 + this.offX });
    }
    segs.push({
      x0: this.offX + r.width,
      x1: this.width,
      color: this.background,
      data: null,
      offset: 0,
    });
    return Row.fromSegments(this.width, this.channels, segs);
  }
}
