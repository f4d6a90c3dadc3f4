export {
  MATRIX_BACKENDS,
  BACKEND_EXCLUSIONS,
  selectedBackends,
  exclusionFor,
  describeBackends,
  useBackend,
  decodeStepsFor,
  SOFTWARE_WEBGPU_DECODE_STEPS,
  type MatrixBackend,
  type BackendExclusion,
  type MatrixContext,
  type MatrixIt,
} from './backends.js';
export { expectNoLeaks } from './leaks.js';
export { expectAllClose, maxAbsDiff, type CloseOptions, type DiffReport } from './compare.js';
export { mulberry32, randn, randUniform, toF32 } from './random.js';
export { fixturesDir, fixturePath, REPO_ROOT, loadFixture, loadFixtureJson } from './fixtures.js';
export { findSwiftShaderICD, SWIFTSHADER_ICD_CANDIDATES } from './webgpu-env.js';
export {
  runInBrowser,
  launchChromium,
  findChromium,
  CHROMIUM_ARGS,
  CHROMIUM_CANDIDATES,
  type BrowserRunResult,
  type RunInBrowserOptions,
} from './browser.js';
