import { ErrorCode, OwletError } from '@owlet/core';
import { TokenizerError } from '@owlet/tokenizer';
import { describe, expect, it } from 'vitest';

import { EXIT, EXIT_STATUS, UsageError, classify } from './errors.js';

describe('exit status by error code, not by message', () => {
  it('an internal SHAPE_MISMATCH (a model bug) exits 1', () => {
    const c = classify(new OwletError(ErrorCode.SHAPE_MISMATCH, 'matmul: expected [2, 4], got [2, 5]'));
    expect(c).toEqual({
      exitCode: EXIT.INTERNAL,
      code: 'SHAPE_MISMATCH',
      message: 'internal error: matmul: expected [2, 4], got [2, 5]',
    });
  });

  it('bad input exits 2 with its hint', () => {
    const c = classify(new OwletError(ErrorCode.INVALID_CONFIG, 'config.json: hidden_size must be > 0, got -1'));
    expect(c.exitCode).toBe(EXIT.BAD_INPUT);
    expect(c.message).toBe(
      'config.json: hidden_size must be > 0, got -1 (check config.json / preprocessor_config.json of the model)',
    );
    expect(classify(new TokenizerError('IMAGE_COUNT_MISMATCH', '2 slots, 1 image')).exitCode).toBe(EXIT.BAD_INPUT);
    expect(classify(new UsageError('unknown flag --x')).exitCode).toBe(EXIT.BAD_INPUT);
  });

  it('ABORTED exits 130', () => {
    expect(classify(new OwletError(ErrorCode.ABORTED, 'chat was aborted')).exitCode).toBe(EXIT.INTERRUPTED);
  });

  it('a Node system error about a path is bad input; other unknown codes are internal', () => {
    const enoent = Object.assign(new Error("ENOENT: no such file or directory, open 'x.png'"), {
      code: 'ENOENT',
      syscall: 'open',
    });
    expect(classify(enoent).exitCode).toBe(EXIT.BAD_INPUT);
    // an undeclared code (e.g. a Node programming error) is never taken for bad input
    const bug = Object.assign(new TypeError('The "path" argument must be of type string'), {
      code: 'ERR_INVALID_ARG_TYPE',
    });
    expect(classify(bug).exitCode).toBe(EXIT.INTERNAL);
    expect(classify(new Error('boom')).exitCode).toBe(EXIT.INTERNAL);
  });

  it('classifies every declared code', () => {
    expect(Object.keys(EXIT_STATUS).sort()).toEqual(Object.keys(ErrorCode).sort());
  });
});
