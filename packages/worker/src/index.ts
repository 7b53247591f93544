export * from './worker.js';
export * from './vector-trainer.js';
