/**
 * Vitest setup (runs in every test process before any test file): points Dawn at SwiftShader, the
 * CPU Vulkan driver shipped by Debian's chromium package, unless the environment already chose a
 * Vulkan driver. Must run before the first `initBackend('webgpu')` in the process.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { findSwiftShaderICD } from './webgpu-env.js';

if (!process.env.VK_ICD_FILENAMES) {
  const icd = findSwiftShaderICD();
  if (icd) process.env.VK_ICD_FILENAMES = icd;
}
if (!process.env.XDG_RUNTIME_DIR || !existsSync(process.env.XDG_RUNTIME_DIR)) {
  const dir = join(tmpdir(), `owlet-xdg-${process.getuid?.() ?? 0}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  process.env.XDG_RUNTIME_DIR = dir;
}
