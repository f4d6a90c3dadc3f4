export interface CloseOptions {
  atol?: number;
  rtol?: number;
  label?: string;
}

export interface DiffReport {
  maxAbs: number;
  index: number;
}

/** Largest |a − b| and where it is (NaN counts as infinitely far). */
export function maxAbsDiff(actual: ArrayLike<number>, expected: ArrayLike<number>): DiffReport {
  if (actual.length !== expected.length) {
    throw new Error(`length mismatch: actual ${actual.length}, expected ${expected.length}`);
  }
  let maxAbs = 0;
  let index = -1;
  for (let i = 0; i < actual.length; i++) {
    const a = Number(actual[i]);
    const e = Number(expected[i]);
    const d =
      Number.isNaN(a) || Number.isNaN(e) ? (Number.isNaN(a) && Number.isNaN(e) ? 0 : Infinity) : Math.abs(a - e);
    if (d > maxAbs) {
      maxAbs = d;
      index = i;
    }
  }
  return { maxAbs, index };
}

/** Throws with the worst element when any |a − e| > atol + rtol·|e|. */
export function expectAllClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  options: CloseOptions = {},
): DiffReport {
  const atol = options.atol ?? 1e-5;
  const rtol = options.rtol ?? 0;
  if (actual.length !== expected.length) {
    throw new Error(
      `${options.label ?? 'values'}: length mismatch: actual ${actual.length}, expected ${expected.length}`,
    );
  }
  for (let i = 0; i < actual.length; i++) {
    const a = Number(actual[i]);
    const e = Number(expected[i]);
    if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e))) {
      const r = maxAbsDiff(actual, expected);
      throw new Error(
        `${options.label ?? 'values'}: element ${i} is ${a}, expected ${e} (|diff| ${Math.abs(a - e)} > atol ${atol} + rtol ${rtol}); max |diff| ${r.maxAbs} at ${r.index}`,
      );
    }
  }
  return maxAbsDiff(actual, expected);
}
