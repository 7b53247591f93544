export * from './coordinator.js';
export * from './node-averager.js';
export { contributorName, rangeText } from './admission.js';
export { MAX_AUTO_AVERAGE_THREADS, MIN_THREADED_FLOATS, averageThreadCount, roundThreads } from './average-threads.js';
