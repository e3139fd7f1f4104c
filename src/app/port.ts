// Whether the playground's port is free, asked before the slow parts of start-up (Redis, models):
// a second `npm start` should say "port in use" at once, not after loading everything.
import { once } from 'node:events';
import { createServer } from 'node:net';
import { portInUseError } from '../bots/web/server.js';

/** Throws the playground's "port in use" error when nothing can listen on host:port now. */
export async function assertPortFree(port: number, host: string): Promise<void> {
  const server = createServer();
  const outcome = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
    server.once('listening', () => resolve(undefined));
    server.once('error', resolve);
    server.listen({ port, host, exclusive: true });
  });
  if (outcome === undefined) {
    server.close();
    await once(server, 'close');
    return;
  }
  if (outcome.code === 'EADDRINUSE' || outcome.code === 'EACCES') throw portInUseError(port, host, outcome);
  throw outcome;
}
