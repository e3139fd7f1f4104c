#!/usr/bin/env node
// `npx vqclip ...`: the CLI in src/app/cli.ts, run through tsx (no build step in this project).
import { register } from 'tsx/esm/api';

register();
const { cliMain } = await import('../src/app/cli.ts');
await cliMain();
