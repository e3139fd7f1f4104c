// Public surface of the graph builder: build a Graph with ops, add grad(), serialize to ONNX.
export { grad } from './autodiff.js';
export { type DType, Graph, GraphError, type Shape, type Tensor, type TensorData } from './graph.js';
export { conv2d, upsampleConv3x3, upsampleNearest2x } from './ops/conv.js';
export * from './ops/elementwise.js';
export { linear, matmul } from './ops/matmul.js';
export { groupNorm, layerNorm, logSoftmax, softmax } from './ops/norm.js';
export { vectorQuantize } from './ops/quantize.js';
export { reduceMax, reduceMean, reduceSum } from './ops/reduce.js';
export {
  concat,
  expand,
  gather,
  pad,
  reshape,
  slice,
  split,
  squeeze,
  transpose,
  unsqueeze,
} from './ops/shape.js';
export { asin, clampWithGrad, l2Normalize, sphericalDistance } from './ops/trig.js';
export { serialize } from './serialize.js';
