// The bot process's /metrics and /healthz (METRICS_PORT): queue depth for every job kind, the chat
// adapters' API calls and 429s, and whether Redis answers. `npm run bot` and `npm start` both call
// it; a worker serves its own on WORKER_METRICS_PORT (src/worker/runtime/compose-worker.ts).
import type { Config } from '../shared/config.js';
import { jobKinds } from '../shared/jobs.js';
import type { UndoStack } from '../shared/lifecycle.js';
import type { Logger } from '../shared/logger.js';
import { Metrics } from '../shared/metrics.js';
import { Health, redisCheck, startMetricsServer } from '../shared/metrics-server.js';
import type { BotServices } from './core/services.js';

export interface BotObservability {
  readonly metrics: Metrics;
  /** `http://host:port` of the listener. */
  readonly url: string;
}

/**
 * Starts the listener when config.metrics.port is set (else returns undefined: nothing to count
 * into). Its close is registered on `undo`.
 */
export async function startBotObservability(
  config: Pick<Config, 'metrics' | 'queuePrefix'>,
  services: Pick<BotServices, 'connection'>,
  options: { undo: UndoStack; logger: Logger },
): Promise<BotObservability | undefined> {
  const port = config.metrics.port;
  if (port === undefined) return undefined;
  const metrics = new Metrics();
  metrics.watchQueues(services.connection, config.queuePrefix, jobKinds);
  options.undo.push('metrics', () => metrics.close());
  const health = new Health().set('redis', redisCheck(services.connection));
  const server = await startMetricsServer({
    metrics,
    health,
    port,
    host: config.metrics.host,
    portVariable: 'METRICS_PORT',
    logger: options.logger,
  });
  options.undo.push('metrics server', () => server.close());
  options.logger.info({ url: `${server.url}/metrics` }, 'metrics and /healthz listening');
  return { metrics, url: server.url };
}
