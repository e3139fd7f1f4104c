import { defineConfig } from 'vitest/config';

// Files that need a process of their own (a fresh worker each, as before):
const ownModules = [
  // vi.mock of a module: it must neither leak into other files nor miss one already loaded.
  'test/worker/onnx/session-options.test.ts',
  // Its first import is undici 7, before discord.js: it must be the first thing the process loaded.
  'test/bots/discord/undici-versions.test.ts',
  // Its probe must catch the worker while the models still load: with ONNX Runtime and PGlite
  // already loaded by an earlier file, that phase is over before the first request.
  'test/worker/runtime/worker-metrics.test.ts',
];

export default defineConfig({
  test: {
    // Builds what spawned programs run (scripts/build.mjs) once, before the files start them.
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Three on two cores: many files wait (lock expiry, edit throttles, programs starting) more than
    // they compute, and a third worker fills those waits. Measured on 2 cores, whole suite, same
    // tree: 2 workers 260-275 s (CPU 1.6 cores busy), 3 workers 243 s twice (1.84 cores busy).
    maxWorkers: 3,
    // No results cache, so files run in vitest's order for unknown files (larger first) rather than
    // longest-first from the last run: on 2 cores the same tree took 149 s without the cache and
    // 171-177 s with it (longest-first starts the heaviest files together).
    cache: false,
    projects: [
      {
        extends: true,
        test: {
          name: 'shared',
          include: ['test/**/*.test.ts'],
          exclude: ownModules,
          // Each worker runs file after file in one process, so discord.js, BullMQ, ONNX Runtime,
          // PGlite... load once per worker instead of once per file. Every file still starts its
          // own Redis, models and databases; a file that changes process.env, globals or timers
          // for good (not restored in an after hook) belongs in ownModules.
          isolate: false,
        },
      },
      {
        extends: true,
        test: { name: 'isolated', include: ownModules },
      },
    ],
  },
});
