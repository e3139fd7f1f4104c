// The limits the CLI checks its arguments against before anything heavy has loaded. They are
// shared/jobs.ts's (test/app/cli.test.ts holds them equal), copied because importing that module
// costs about a second (bullmq, zod), which every `vqclip --help` and every typo would pay.
export const cliLimits = {
  minSide: 64,
  maxSide: 1024,
  maxSteps: 1000,
  maxTopK: 50,
  maxSearchK: 50,
  queryChars: 500,
  maxCandidates: 16,
} as const;

export const cliPresets = ['draft', 'normal', 'better'] as const;
export const cliDrawers = ['vqgan-clip', 'dalle'] as const;
