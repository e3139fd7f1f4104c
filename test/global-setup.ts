// Once per `vitest run`, before any file: the compiled build the tests' child processes run
// (scripts/run.mjs, npm start), so that files starting programs at once do not all build it.
import { ensureBuilt } from '../scripts/build.mjs';

export default async function setup(): Promise<void> {
  await ensureBuilt();
}
