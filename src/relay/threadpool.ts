// Imported first by `smtp365 relay`: every durable acceptance holds a libuv
// worker thread in fsync(2); with the default 4, a few clients sending at
// once stall delivery's small file operations behind them. Must run before
// the pool starts (the first asynchronous fs call), hence a module of its own.
process.env.UV_THREADPOOL_SIZE ??= '16';
export {};
