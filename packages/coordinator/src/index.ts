export * from './coordinator.js';
export * from './node-averager.js';
export { contributorName, rangeText } from './admission.js';
