export { Linear, type LinearOptions } from './Linear.js';
export { LayerNorm } from './LayerNorm.js';
export { RMSNorm } from './RMSNorm.js';
export { Embedding } from './Embedding.js';
