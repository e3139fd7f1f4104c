#!/usr/bin/env node
// `npx vqclip ...`: the CLI in src/app/cli.ts, compiled (scripts/build.mjs) and run in this process.
import { pathToFileURL } from 'node:url';
import { compiledPath, ensureBuilt } from '../scripts/build.mjs';

process.setSourceMapsEnabled(true);
const { cliMain } = await import(pathToFileURL(compiledPath(await ensureBuilt(), 'src/app/cli.ts')).href);
await cliMain();
