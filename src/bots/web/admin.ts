// The bull-board dashboard at /admin: every job queue of this deployment, for operators. It is the
// one place on the bot side that sees BullMQ directly (JobClient hides it from everything else),
// because showing raw queues is its whole purpose.
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { HonoAdapter } from '@bull-board/hono';
import { serveStatic } from '@hono/node-server/serve-static';
import { Queue } from 'bullmq';
import type { Hono } from 'hono';
import type { Redis } from 'ioredis';
import { jobKinds } from '../../shared/jobs.js';

export interface AdminBoard {
  /** Mount with `app.route(basePath, board.app)`. */
  readonly app: Hono;
  readonly basePath: string;
  close(): Promise<void>;
}

/** Builds the dashboard for the queues under `prefix`; the caller owns `connection`. */
export function createAdminBoard(options: {
  connection: Redis;
  prefix: string;
  basePath?: string;
}): AdminBoard {
  const basePath = options.basePath ?? '/admin';
  const queues = jobKinds.map(
    (kind) => new Queue(kind, { connection: options.connection, prefix: options.prefix }),
  );
  const serverAdapter = new HonoAdapter(serveStatic).setBasePath(basePath);
  createBullBoard({
    queues: queues.map((q) => new BullMQAdapter(q)),
    serverAdapter,
    options: { uiConfig: { boardTitle: 'vqclip jobs' } },
  });
  return {
    app: serverAdapter.registerPlugin(),
    basePath,
    async close() {
      await Promise.allSettled(queues.map((q) => q.close()));
    },
  };
}
