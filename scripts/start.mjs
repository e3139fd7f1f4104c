// `npm start`: installs what is missing (setup.mjs, Node built-ins only), then runs src/app/start.ts
// compiled (build.mjs: tsx's loader would cost every start, and its worker child, ~1 s more) in
// this very process. No `tsx` CLI in between: it relays Ctrl-C to its child and SIGKILLs it when
// the child has not answered within 30 ms, which a busy process cannot.
import { ensure, needsFor } from './setup.mjs';

if (!ensure(needsFor('start'), { redisAlternative: 'set REDIS_URL to a Redis you run' })) process.exit(1);
const { entryUrl } = await import('./build.mjs');
await import(await entryUrl('src/app/start.ts'));
