export { spliceOwl2, spliceOwl1, IMAGE_TOKEN_INDEX, IGNORE_INDEX, type SplicedSequence, type EmbedFn } from './splice.js';
