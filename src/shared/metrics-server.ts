// The small HTTP listener every bot and worker process can run beside its work (METRICS_PORT,
// WORKER_METRICS_PORT): GET /metrics (Prometheus text, metrics.ts) and GET /healthz (200 when every
// check passes, else 503, with each check's state in JSON) for container healthchecks and load
// balancers. Apart from the playground on purpose: it needs no password (counts only, no actions),
// and a worker has no other HTTP server. node:http is enough for two read-only routes.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { UnavailableError } from './errors.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';

/** A check resolves when healthy and throws (or rejects) with the reason when not. */
export type HealthCheck = () => Promise<unknown> | unknown;

/**
 * The named checks of /healthz. Parts register theirs as they come up (`set('models', ...)`), so a
 * worker still loading its models answers 503 `models: loading` instead of nothing.
 */
export class Health {
  readonly #checks = new Map<string, HealthCheck>();
  readonly #timeoutMs: number;

  /** @param timeoutMs - a check slower than this fails (a hung Redis must not hang the probe). @defaultValue 2000 */
  constructor(timeoutMs = 2000) {
    this.#timeoutMs = timeoutMs;
  }

  set(name: string, check: HealthCheck): this {
    this.#checks.set(name, check);
    return this;
  }

  /** A check that fails with `reason` until set() replaces it. */
  pending(name: string, reason: string): this {
    return this.set(name, () => {
      throw new Error(reason);
    });
  }

  async report(): Promise<{ ok: boolean; checks: Record<string, string> }> {
    const entries = await Promise.all(
      [...this.#checks].map(async ([name, check]): Promise<[string, string]> => {
        let timer: NodeJS.Timeout | undefined;
        try {
          await Promise.race([
            Promise.resolve().then(check),
            new Promise((_, reject) => {
              timer = setTimeout(
                () => reject(new Error(`no answer in ${this.#timeoutMs} ms`)),
                this.#timeoutMs,
              );
            }),
          ]);
          return [name, 'ok'];
        } catch (error) {
          return [name, error instanceof Error ? error.message : String(error)];
        } finally {
          clearTimeout(timer);
        }
      }),
    );
    const checks = Object.fromEntries(entries);
    return { ok: entries.every(([, state]) => state === 'ok'), checks };
  }
}

/** A Redis check: PING answered (ioredis's `ping`). */
export const redisCheck =
  (connection: { ping(): Promise<unknown>; status: string }): HealthCheck =>
  async () => {
    if (connection.status !== 'ready') throw new Error(`redis ${connection.status}`);
    await connection.ping();
  };

export interface MetricsServerOptions {
  metrics: Metrics;
  health: Health;
  /** 0: any free port. */
  port: number;
  host: string;
  /** The variable that sets the port, for the "in use" line (METRICS_PORT, WORKER_METRICS_PORT). */
  portVariable: string;
  logger?: Logger;
}

export interface RunningMetricsServer {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

export async function startMetricsServer(options: MetricsServerOptions): Promise<RunningMetricsServer> {
  const { metrics, health, logger } = options;
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/metrics') {
      metrics.text().then(
        (body) => res.writeHead(200, { 'content-type': metrics.contentType }).end(body),
        (err: unknown) => {
          logger?.warn({ err }, 'collecting metrics failed');
          res.writeHead(500, { 'content-type': 'text/plain' }).end('collecting metrics failed\n');
        },
      );
    } else if (path === '/healthz') {
      void health.report().then((report) =>
        res
          .writeHead(report.ok ? 200 : 503, {
            'content-type': 'application/json',
            'cache-control': 'no-store',
          })
          .end(`${JSON.stringify({ status: report.ok ? 'ok' : 'unhealthy', checks: report.checks })}\n`),
      );
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics or /healthz\n');
    }
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('listening', resolve);
      server.once('error', reject);
      server.listen(options.port, options.host);
    });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new UnavailableError(
        `port ${options.port} on ${options.host} is in use: set ${options.portVariable} to a free port`,
        { cause: error },
      );
    }
    throw error;
  }
  const { port } = server.address() as AddressInfo;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    url: `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
