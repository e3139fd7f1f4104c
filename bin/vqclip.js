#!/usr/bin/env node
// `npx vqclip ...`: the CLI in src/app/cli.ts, compiled (scripts/build.mjs) and run in this process.
import { entryUrl } from '../scripts/build.mjs';

const { cliMain } = await import(await entryUrl('src/app/cli.ts'));
await cliMain();
