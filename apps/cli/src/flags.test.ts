/** The strict flag parser (in process; cli.test.ts checks the same through the real binary). */
import { describe, expect, it } from 'vitest';

import { UsageError } from './errors.js';
import { intFlag, numFlag, parseFlags } from './flags.js';

const SPECS = {
  prompt: { type: 'string' },
  image: { type: 'string', multiple: true },
  'max-new-tokens': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

const parse = (argv: string[], positionals = 0) => parseFlags(argv, SPECS, { command: 'run', positionals });

function usage(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    const m = (e as UsageError).message;
    expect(m.split('\n')).toHaveLength(1);
    return m;
  }
  throw new Error('expected a UsageError');
}

describe('parseFlags', () => {
  it('reads --name value, --name=value, booleans, repeatable flags, short aliases and --', () => {
    const r = parse(['--prompt', 'hi there', '--image=a.png', '--image', 'b.png', '--json', '-h', '--', '--x'], 1);
    expect(r.values).toEqual({ prompt: 'hi there', image: ['a.png', 'b.png'], json: true, help: true });
    expect(r.positionals).toEqual(['--x']);
  });

  it('a value flag takes a negative number as its value (no "argument is ambiguous")', () => {
    expect(parse(['--max-new-tokens', '-1']).values['max-new-tokens']).toBe('-1');
    expect(parse(['--prompt', '-x']).values.prompt).toBe('-x');
  });

  it('refuses a single-valued flag given twice', () => {
    expect(usage(() => parse(['--prompt', 'a', '--prompt', 'b']))).toMatch(/--prompt was given more than once/);
    expect(usage(() => parse(['--prompt=a', '--prompt=a']))).toMatch(/more than once/);
  });

  it('refuses unknown options, stray arguments, values on booleans and missing values', () => {
    expect(usage(() => parse(['--imagee', 'x']))).toMatch(/unknown option --imagee/);
    expect(usage(() => parse(['-z']))).toMatch(/unknown option -z/);
    expect(usage(() => parse(['stray']))).toMatch(/unexpected argument "stray"/);
    expect(usage(() => parse(['a', 'b', 'c'], 2))).toMatch(/too many arguments/);
    expect(usage(() => parse(['--json=yes']))).toMatch(/--json takes no value/);
    expect(usage(() => parse(['--prompt']))).toMatch(/--prompt needs a value/);
    expect(usage(() => parse(['--prompt', '--json']))).toMatch(/--prompt needs a value, got the option --json/);
    expect(parse(['--prompt=--json']).values.prompt).toBe('--json');
  });
});

describe('intFlag / numFlag', () => {
  it('accepts decimal integers in range', () => {
    expect(intFlag('n', '5', 1)).toBe(5);
    expect(intFlag('n', '0', 0)).toBe(0);
    expect(intFlag('n', '1000000000000', 1)).toBe(1e12);
    expect(intFlag('n', undefined, 1)).toBeUndefined();
  });

  it.each(['0x10', ' 5', '5 ', '5.0', '1e3', '+5', '', '0b1', 'Infinity', '9007199254740993', '½'])(
    'refuses %j as an integer',
    (v) => {
      expect(usage(() => intFlag('max-new-tokens', v, 1))).toMatch(/--max-new-tokens must be a whole number ≥ 1/);
    },
  );

  it('says what a valid value is for a negative integer', () => {
    expect(usage(() => intFlag('max-new-tokens', '-1', 1))).toBe(
      '--max-new-tokens must be a whole number ≥ 1 written in decimal digits, got "-1"',
    );
  });

  it('numbers: decimal notation only', () => {
    expect(numFlag('t', '0.7', () => true, 'x')).toBe(0.7);
    expect(numFlag('t', '.5', () => true, 'x')).toBe(0.5);
    expect(numFlag('t', '1e-2', () => true, 'x')).toBe(0.01);
    for (const v of ['0x1', ' 1', 'NaN', 'Infinity', '1.', '', '- 1']) {
      expect(usage(() => numFlag('t', v, () => true, 'a number'))).toMatch(/--t must be a number/);
    }
    expect(usage(() => numFlag('top-p', '2', (n) => n <= 1, 'a number in (0, 1]'))).toMatch(/in \(0, 1\]/);
  });
});
