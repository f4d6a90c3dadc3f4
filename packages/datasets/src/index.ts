/**
 * @owlet/datasets — generated training data for owlet.
 *
 * The shapes VQA set (issue #17): seeded scenes of 1–3 coloured circles, squares and upright
 * triangles (`generateScene`), a renderer to RGB bytes (`renderScene`) and PNG (`encodePng`),
 * captions for stage 1 and four one-word question types for stage 2 (`captionItem`, `vqaItem`),
 * and a streaming sample source for @owlet/trainer (`ShapesVqaSamples`).
 */
export { mulberry32, mixSeed, Rng } from './rng.js';
export {
  COLORS,
  COLOR_SPECS,
  SHAPES,
  SHAPE_EXTENT,
  generateScene,
  shapesLeftToRight,
  type ColorName,
  type Scene,
  type SceneOptions,
  type SceneShape,
  type ShapeKind,
} from './scene.js';
export { insideShape, renderScene, type RgbImage } from './render.js';
export { encodePng } from './png.js';
export {
  CAPTION_PROMPT,
  QUESTION_TYPES,
  caption,
  captionItem,
  colorQuestion,
  countQuestion,
  existsQuestion,
  normalizeAnswer,
  shapeQuestion,
  vqaItem,
  type CaptionItem,
  type QuestionType,
  type VqaItem,
} from './vqa.js';
export { IGNORE_INDEX, ShapesVqaSamples, promptIds, type ShapesSample, type ShapesSampleOptions } from './samples.js';
