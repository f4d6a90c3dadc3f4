declare module 'virtual:owlet-bundled-model' {
  import type { BundledModel } from './engine/manifest.js';
  const model: BundledModel;
  export default model;
}
