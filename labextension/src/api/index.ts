/**
 * The one REST client of the ReefLab panel, by capability: every call to /reeflab/api/ goes through
 * transport.ts; the types mirror the server's JSON models (types.ts).
 */
export * from './annotation';
export * from './catalog';
export * from './checks';
export * from './jobs';
export * from './pipelines';
export * from './serverless';
export * from './storage';
export * from './transport';
export * from './types';
