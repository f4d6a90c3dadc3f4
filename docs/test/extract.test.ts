import { describe, expect, it } from 'vitest';

import { endsWithAssertion, extractMarkdown, extractTsdoc } from './extract.js';

describe('example extraction', () => {
  it('reads ts blocks with their options and skips other languages', () => {
    const md = [
      '# t',
      '```ts',
      'const a = 1;',
      'assert.equal(a, 1);',
      '```',
      '```sh',
      'ls',
      '```',
      '- item',
      '  ```ts skip: needs the released checkpoint',
      '  await fromPretrained(x);',
      '  ```',
      '```ts server',
      'assert.ok(process.env.OWLET_BASE_URL);',
      '```',
    ].join('\n');
    const ex = extractMarkdown('a.md', md);
    expect(ex.map((e) => [e.line, e.skip, e.server])).toEqual([
      [2, undefined, false],
      [10, 'needs the released checkpoint', false],
      [13, undefined, true],
    ]);
    expect(ex[1]?.code).toBe('await fromPretrained(x);');
  });

  it('refuses unknown options and unclosed blocks', () => {
    expect(() => extractMarkdown('a.md', '```ts run\nx\n```')).toThrow(/unknown code block option "run"/);
    expect(() => extractMarkdown('a.md', '```ts\nx')).toThrow(/unclosed/);
  });

  it('reads @example blocks from TSDoc', () => {
    const src = [
      '/**',
      ' * Doc.',
      ' *',
      ' * @example',
      ' * ```ts',
      ' * f(1);',
      ' * ```',
      ' */',
      'export function f() {}',
    ];
    const ex = extractTsdoc('f.ts', src.join('\n'));
    expect(ex).toHaveLength(1);
    expect(ex[0]?.code).toBe('f(1);');
    expect(ex[0]?.line).toBe(4);
  });

  it('requires the last statement to be an assertion', () => {
    expect(endsWithAssertion('const a = 1;\nassert.equal(a, 1);')).toBe(true);
    expect(endsWithAssertion('assert.deepEqual(\n  [1],\n  [1],\n);\n// done')).toBe(true);
    expect(endsWithAssertion('expect(1).toBe(1);')).toBe(true);
    expect(endsWithAssertion('assert.ok(1);\nmodel.dispose();')).toBe(false);
    expect(endsWithAssertion('console.log(1);')).toBe(false);
    expect(endsWithAssertion('if (x) {\n  assert.ok(x);\n}')).toBe(false);
  });
});
