// Public library API of smtp365. Each area adds its exports here.
export * from './errors/index.ts';
export * from './config/index.ts';
export * from './auth/index.ts';
export * from './send/index.ts';
