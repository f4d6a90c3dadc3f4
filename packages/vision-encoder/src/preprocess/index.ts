/**
 * Image preprocessing of mPLUG-Owl2 / mPLUG-Owl, identical to the official Python pipeline
 * (Pillow 9.4 + transformers CLIPImageProcessor): decoding (sharp in Node, createImageBitmap in
 * browsers, raw buffers, tensors), Pillow mode conversions, Pillow's exact resampling, the entry
 * points `pad` / `resize` / `v1` / `clip_default`, and normalisation. Memory stays bounded for any
 * aspect ratio: no long-edge square is ever built.
 */
export {
  MplugOwlImageProcessor,
  decodeImage,
  imageFromRaw,
  imageFromTensor,
  type ImageInput,
  type RawImageInput,
  type ImageProcessorOptions,
  type PixelValues,
} from './processor.js';
export {
  resolvePreprocessorConfig,
  OWL2_PREPROCESSOR_CONFIG,
  OWL1_PREPROCESSOR_CONFIG,
  CLIP_MEAN,
  CLIP_STD,
  type PreprocessorConfig,
  type PreprocessorConfigJson,
} from './config.js';
export {
  preprocessToUint8,
  pixelLUT,
  applyLUT,
  shortestEdgeSize,
  centerCropPlan,
  DEFAULT_MAX_EXACT_STRETCH_PIXELS,
  type EntryPoint,
  type PipelineOptions,
  type Uint8Planar,
} from './pipeline.js';
export {
  MODE_CHANNELS,
  PreprocessErrorCode,
  convertToRGB,
  validateImage,
  type DecodedImage,
  type PillowMode,
} from './image.js';
export {
  readImageHeader,
  checkImageLimits,
  checkDecodeMemory,
  checkImageFormat,
  sniffImageFormat,
  DECODABLE_FORMATS,
  FORMAT_NAMES,
  DEFAULT_MAX_PIXELS,
  DEFAULT_MAX_DECODE_BYTES,
  DEFAULT_MAX_EDGE,
  type ImageHeader,
  type SniffedFormat,
  type ImageLimits,
} from './header.js';
export { decodeImageBrowser, type BrowserDecodeOptions } from './decode-browser.js';
export { decodeImageNode, type NodeDecodeOptions } from './decode-node.js';
export { decodeBmp } from './bmp.js';
export {
  Resampling,
  PRECISION_BITS,
  FILTERS,
  axisCoefficients,
  pillowResize,
  readPlanar,
  ConvolutionResize,
  NearestResize,
  CropRows,
  type ConvolutionFilter,
  type AxisCoefficients,
  type Region,
} from './resample.js';
export { Row, BufferRows, MapRows, PadToSquare, type RowSource, type Segment } from './rows.js';

export { resizeImage } from './resize-image.js';
