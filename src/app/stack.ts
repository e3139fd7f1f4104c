// The whole system on one machine, for `npm start` and the end-to-end tests: Redis (given, or a
// private redis-server keeping its append-only file in DATA_DIR), models (tiny random ones written
// on first run), a worker in a child process of its own (worker-child.ts), and in this process the
// bot services, the chat adapters whose tokens are set and the playground. A composition root: the
// one place that wires the bot side and the worker side together, so it lives outside both.
import { join } from 'node:path';
import { type StartedAdapter, startChatAdapters } from '../bots/adapters.js';
import { createBotServices } from '../bots/core/services.js';
import { startBotObservability } from '../bots/observability.js';
import { assertPlaygroundExposure } from '../bots/web/auth.js';
import { Library } from '../bots/web/library.js';
import { type RunningPlayground, startPlayground } from '../bots/web/server.js';
import type { Config } from '../shared/config.js';
import { UnavailableError } from '../shared/errors.js';
import { UndoStack } from '../shared/lifecycle.js';
import type { Logger } from '../shared/logger.js';
import { checkEvictionPolicy, openConnection } from '../shared/queues.js';
import { lockDirectory } from '../worker/runtime/dir-lock.js';
import type { LoadModelsOptions } from '../worker/runtime/models.js';
import { ensureModels, hasRandomWeights } from './models-setup.js';
import { assertPortFree } from './port.js';
import { promptReader } from './prompt-tokens.js';
import { type PrivateRedis, spawnRedis } from './redis-server.js';
import { spawnWorkerChild, type WorkerChild } from './worker-child.js';

type ChildLogger = Logger & { child?: (bindings: Record<string, unknown>) => Logger };

export interface StackOptions {
  /** Everything, worker tuning included (config.worker). */
  config: Config;
  logger: ChildLogger;
  /** pino level of the worker process's log lines. @defaultValue 'warn' */
  workerLogLevel?: string;
  /** The compiled worker entry to run (WorkerChildOptions.compiledEntry). */
  workerEntry?: string;
  /** Writes tiny random models when MODELS_DIR holds none. @defaultValue true */
  writeModels?: boolean;
  /** JSON-safe overrides of loadModels' options in the worker (tests use a small default vocabulary). */
  models?: Partial<LoadModelsOptions>;
  /** Lines for the person at the terminal (start-up steps); absent: none. */
  say?: (line: string) => void;
  /** Called when the worker process dies on its own (the stack cannot serve jobs any more). */
  onWorkerExit?: (code: number | null, signal: NodeJS.Signals | null) => void;
}

export interface Stack {
  /** The playground's address. */
  readonly url: string;
  readonly redisUrl: string;
  /** The redis-server we spawned (stopped by close()); undefined with REDIS_URL. */
  readonly redis: PrivateRedis | undefined;
  /** Whether redis-server was spawned by us. */
  readonly privateRedis: boolean;
  /** Whether this start wrote the tiny random models. */
  readonly wroteModels: boolean;
  /** Whether the models are random weights (banner). */
  readonly randomWeights: boolean;
  /** The chat adapters whose tokens are set, as startChatAdapters started them. */
  readonly adapters: readonly StartedAdapter[];
  /** The worker process's pid. */
  readonly workerPid: number;
  /**
   * Resolves once the worker serves the queues (models loaded); rejects with its start-up error.
   * The playground answers before that, and jobs wait in the queue meanwhile.
   */
  readonly workerReady: Promise<void>;
  /** Stops everything in reverse order of start; safe to call twice. */
  close(): Promise<void>;
}

export async function startStack(options: StackOptions): Promise<Stack> {
  const { config, logger } = options;
  const say = options.say ?? (() => {});
  const child = (name: string): Logger => logger.child?.({ name }) ?? logger;
  // Each acquired resource registers its release; a failure half-way releases what exists. Released
  // in reverse: adapters and playground first, then the bot services, the worker, Redis last.
  const undo = new UndoStack(logger);
  const release = () => undo.release();

  try {
    // Before anything slow: a second `npm start` should hear about the port at once, and a page
    // open to the network without a password is refused at once.
    assertPlaygroundExposure(config.host, config.playgroundPassword);
    if (config.port !== 0) await assertPortFree(config.port, config.host);
    if (config.redisUrl === undefined || config.databaseUrl === undefined) {
      // The private Redis's append-only file and PGlite both belong to one stack at a time.
      const lock = await lockDirectory(config.dataDir, {
        name: 'stack.lock',
        busy: (pid) =>
          new UnavailableError(
            `${config.dataDir} is in use by another npm start${pid === undefined ? '' : ` (process ${pid})`}: stop it, or give this one its own DATA_DIR`,
          ),
      });
      undo.push('data dir lock', () => lock.release());
    }

    let redis: PrivateRedis | undefined;
    let redisUrl = config.redisUrl;
    if (redisUrl === undefined) {
      const dir = join(config.dataDir, 'redis');
      say(`starting a private redis-server, data in ${dir} (set REDIS_URL to use your own)…`);
      redis = await spawnRedis({ dataDir: dir });
      undo.push('redis-server', () => redis!.stop());
      redisUrl = redis.url;
    }

    const { wrote } = options.writeModels === false ? { wrote: false } : await ensureModels(config.modelsDir);
    if (wrote) say(`wrote tiny random-weight models to ${config.modelsDir}`);
    const randomWeights = hasRandomWeights(config.modelsDir);

    say(`starting the worker (loading models from ${config.modelsDir})…`);
    let closing = false;
    const worker: WorkerChild = spawnWorkerChild({
      // With a private Redis nobody else could take a handed-back job: stop running jobs at once.
      // They go back to the queue, which the append-only file keeps for the next start.
      config: {
        ...config,
        redisUrl,
        worker: redis ? { ...config.worker, shutdownGraceMs: 0 } : config.worker,
      },
      logLevel: options.workerLogLevel ?? 'warn',
      ...(options.models === undefined ? {} : { models: options.models }),
      ...(options.workerEntry === undefined ? {} : { compiledEntry: options.workerEntry }),
      logger: child('worker:child'),
      onUnexpectedExit: (code, signal) => {
        if (closing) return;
        logger.error({ code, signal }, 'the worker process exited');
        options.onWorkerExit?.(code, signal);
      },
    });
    undo.push('worker', () => {
      closing = true;
      return worker.stop();
    });

    // The bot side comes up while the worker loads its models: the page answers meanwhile, and
    // jobs submitted before the worker is ready wait in the queue.
    const producer = await openConnection(redisUrl);
    producer.on('error', (err) => logger.warn({ err: err.message }, 'redis connection error'));
    undo.push('producer connection', () => producer.quit());
    await checkEvictionPolicy(producer, logger);

    const services = await createBotServices(
      { ...config, redisUrl },
      { logger: child('bot:core'), undo, connection: producer },
    );
    // METRICS_PORT: this process's (queues, chat API calls); the worker child serves its own on
    // WORKER_METRICS_PORT (compose-worker.ts), since its counts live in that process.
    const observability = await startBotObservability(config, services, {
      undo,
      logger: child('bot:metrics'),
    });
    const adapters = await startChatAdapters({
      config,
      services,
      logger,
      undo,
      metrics: observability?.metrics,
    });

    const playground: RunningPlayground = await startPlayground({
      jobs: services.jobs,
      indexJobs: services.indexJobs,
      blobs: services.blobs,
      presignedImages: config.blobs.s3?.presignedUrls === true,
      library: new Library(join(config.dataDir, 'library')),
      admin: { connection: producer, prefix: config.queuePrefix },
      randomWeights,
      promptTokens: await promptReader(config.modelsDir, child('bot:web')),
      logger: child('bot:web'),
      port: config.port,
      host: config.host,
      password: config.playgroundPassword,
    });
    undo.push('playground', () => playground.close());

    return {
      url: playground.url,
      redisUrl,
      redis,
      privateRedis: redis !== undefined,
      wroteModels: wrote,
      randomWeights,
      adapters,
      workerPid: worker.pid,
      workerReady: worker.ready,
      close: release,
    };
  } catch (error) {
    await release();
    throw error;
  }
}
