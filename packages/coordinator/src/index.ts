export * from './coordinator.js';
