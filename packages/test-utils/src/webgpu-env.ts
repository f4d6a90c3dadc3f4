import { existsSync } from 'node:fs';

/** Known locations of SwiftShader's Vulkan ICD file (Debian's chromium package ships one). */
export const SWIFTSHADER_ICD_CANDIDATES = [
  '/usr/lib/chromium/vk_swiftshader_icd.json',
  '/usr/lib64/chromium/vk_swiftshader_icd.json',
  '/usr/lib/chromium-browser/vk_swiftshader_icd.json',
];

export function findSwiftShaderICD(): string | undefined {
  return SWIFTSHADER_ICD_CANDIDATES.find((p) => existsSync(p));
}
