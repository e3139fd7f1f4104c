// Process configuration from environment variables, validated once at start-up. Only main.ts files
// call loadConfig(process.env); everything else receives the typed Config (or a part of it).
// Secrets live here and nowhere else: log redactedConfig(config), never the config itself.
import { z } from 'zod';
import { ConfigError } from './errors.js';
import { type JobKind, jobKinds } from './jobs.js';
import type { QuotaBudget, QuotaLimits } from './quota.js';

export type OrtProvider = 'cuda' | 'cpu';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface Config {
  /** Absent: the launcher spawns a private redis-server. */
  redisUrl?: string;
  /** Namespaces every Redis key (queues, blobs, quotas, cancel flags). @defaultValue 'vqclip' */
  queuePrefix: string;
  /** Absent: embedded PGlite in `${dataDir}/pglite`. */
  databaseUrl?: string;
  /** Connections in the Postgres pool (DATABASE_URL only). @defaultValue 10 */
  databasePoolSize: number;
  /** @defaultValue './data' */
  dataDir: string;
  /** @defaultValue './models' */
  modelsDir: string;
  /** Tried in order; CPU is always appended as the last resort. @defaultValue ['cpu'] */
  ortProviders: OrtProvider[];
  /** 0 lets ONNX Runtime choose. @defaultValue 0 */
  ortIntraOpThreads: number;
  /** 0 lets ONNX Runtime choose. @defaultValue 0 */
  ortInterOpThreads: number;
  /**
   * ORT pool threads busy-wait between ops instead of sleeping. Off by default: on a machine whose
   * cores are shared, spinning threads take time from the threads doing work (bench/README.md).
   * @defaultValue false
   */
  ortAllowSpinning: boolean;
  /**
   * Arithmetic of CLIP's image tower for classify, embed-image and search (generation always runs
   * fp32): 'int8' is ~2x faster on CPU, embeddings within a cosine of ~1e-3 of fp32. @defaultValue 'fp32'
   */
  clipImagePrecision: 'fp32' | 'int8';
  /**
   * Arithmetic of minDALL-E's transformer blocks (DALLE_PRECISION): int8 is 7-bit per-channel
   * weights (a decode step ~4x less memory to stream; logits within ~4% of fp32 on random weights,
   * bench/README.md). @defaultValue 'fp32'
   */
  dallePrecision: 'fp32' | 'int8';
  /**
   * Per-user limits per budget (quota.ts): imagine, and the light jobs (classify, search, embed-image,
   * delete-image), counted apart so that asking "what is this" never spends a generation. In each,
   * `concurrent` is waiting + running jobs and `perWindow` jobs submitted per rolling hour; 0 disables.
   * @defaultValue { imagine: { concurrent: 2, perWindow: 30 }, light: { concurrent: 8, perWindow: 600 } }
   */
  quota: Record<QuotaBudget, QuotaLimits>;
  blobs: {
    /** @defaultValue 86400 (one day) */
    ttlSeconds: number;
    /** @defaultValue 26214400 (25 MiB) */
    maxBytes: number;
    /** Blobs in an S3-compatible bucket (BLOB_STORE_URL=s3://bucket/prefix); absent: in Redis. */
    s3?: S3BlobConfig;
  };
  /**
   * The bot refuses new jobs ("busy, try again in a minute") while Redis uses more than this share
   * of its maxmemory (REDIS_MEMORY_HIGH_WATER, percent), before BullMQ's own writes would fail.
   * @defaultValue 0.9
   */
  redisMemoryHighWater: number;
  /**
   * The Discord adapter runs when `token` is set. `apiUrl`: REST base URL (DISCORD_API_URL, default
   * Discord's; REST proxies and tests set it). `cdnUrl`: one more origin allowed for attachment
   * downloads besides Discord's CDN hosts (DISCORD_CDN_URL). `guildId`: register commands to one guild
   * instead of globally (DISCORD_GUILD_ID). `shards`: the gateway shards this process runs of how
   * many in all (DISCORD_SHARD_IDS, DISCORD_SHARD_COUNT); absent: as many as Discord recommends,
   * all here.
   */
  discord: {
    token?: string;
    applicationId?: string;
    apiUrl?: string;
    cdnUrl?: string;
    guildId?: string;
    shards?: { ids: number[]; count: number };
  };
  /**
   * The Slack adapter runs when `botToken` is set: Socket Mode with `appToken`, else HTTP mode on
   * `port` (SLACK_PORT, default 3001) at /slack/events, verified with `signingSecret`. `apiUrl`: the Web
   * API base URL (SLACK_API_URL, default Slack's; GovSlack, proxies and tests set it).
   */
  slack: {
    botToken?: string;
    signingSecret?: string;
    appToken?: string;
    apiUrl?: string;
    port: number;
    /**
     * Show running jobs' previews as image blocks whose `image_url` is a presigned URL of the blob
     * store (SLACK_PREVIEW_IMAGE_URLS), instead of uploading each preview into the thread. Only for an
     * S3 store that Slack's servers can reach over the internet; the final image is uploaded either way.
     * @defaultValue false
     */
    previewImageUrls?: boolean;
  };
  /** Playground HTTP port. @defaultValue 3000 */
  port: number;
  /** Playground bind address; loopback so the page is not exposed by accident. @defaultValue '127.0.0.1' */
  host: string;
  /**
   * Password of the playground and /admin (PLAYGROUND_PASSWORD): HTTP Basic with any user name, or
   * `Authorization: Bearer <password>`. Required whenever `host` is not loopback: the bot refuses to
   * start without it (src/bots/web/auth.ts). A secret: redactedConfig masks it. @defaultValue none
   */
  playgroundPassword?: string;
  /** The /metrics and /healthz listeners of the bot and worker processes (METRICS_*). */
  metrics: MetricsConfig;
  /** @defaultValue 'info' */
  logLevel: LogLevel;
  /** Worker tuning (WORKER_*), for processes that run a worker; workerSettings() maps it to startWorker. */
  worker: WorkerConfig;
  /** The CLIP zero-shot safety check of images (SAFETY_*). */
  safety: SafetyConfig;
}

export interface MetricsConfig {
  /**
   * Address both listeners bind (METRICS_HOST). They answer without a password: Prometheus and
   * container healthchecks scrape them, and they expose counts only, never jobs or secrets.
   * @defaultValue '127.0.0.1'
   */
  host: string;
  /** The bot process's port for /metrics and /healthz (METRICS_PORT; 0: any free port). @defaultValue none (off) */
  port?: number;
  /** A worker process's port (WORKER_METRICS_PORT; 0: any free port). @defaultValue none (off) */
  workerPort?: number;
}

export type SafetyMode = 'off' | 'spoiler' | 'block';

export interface SafetyConfig {
  /**
   * Whether workers compute the check (SAFETY_CHECK): on imagine results and indexed images, which
   * searches then leave out unless asked. Off: no `safety` on results, nothing flagged.
   * @defaultValue true
   */
  check: boolean;
  /**
   * How adapters present a flagged image (SAFETY_MODE): `spoiler` hides it behind a spoiler or
   * blur, `block` withholds it with a sentence, `off` shows it as any other. Workers ignore it.
   * @defaultValue 'spoiler'
   */
  mode: SafetyMode;
  /** Flagged above this probability mass on the unsafe prompts, 0..1 (SAFETY_THRESHOLD). @defaultValue 0.5 */
  threshold: number;
  /**
   * A JSON file of prompts (SAFETY_PROMPTS_FILE): `{ "categories": { "nudity": [...], ... },
   * "safe": [...] }`, replacing the built-in ones (worker/classify/safety.ts). @defaultValue none
   */
  promptsFile?: string;
}

export interface WorkerConfig {
  /** Queues this worker serves (WORKER_QUEUES, comma-separated). @defaultValue every job kind */
  queues: JobKind[];
  /**
   * Jobs at once per queue (WORKER_IMAGINE_CONCURRENCY, WORKER_CLASSIFY_CONCURRENCY,
   * WORKER_EMBED_CONCURRENCY, WORKER_SEARCH_CONCURRENCY, WORKER_DELETE_CONCURRENCY,
   * WORKER_CHANNEL_STATE_CONCURRENCY).
   * @defaultValue { imagine: 1, classify: 16, 'embed-image': 16, search: 4, 'delete-image': 4, 'channel-state': 4 }
   */
  concurrency: Record<JobKind, number>;
  /** @defaultValue 30000 */
  lockDurationMs: number;
  /** @defaultValue 30000 */
  stalledIntervalMs: number;
  /** @defaultValue 1 */
  maxStalledCount: number;
  /** Images per encoder run. @defaultValue 16 */
  microBatch: number;
  /** How long a micro-batch waits to fill. @defaultValue 5 */
  batchWaitMs: number;
  /** @defaultValue 1200000 (20 min) */
  imagineTimeBudgetMs: number;
  /** @defaultValue 10000 */
  shutdownGraceMs: number;
  /** @defaultValue 3600 */
  previewTtlSeconds: number;
  /** Compute (or load from the cache) the default vocabulary's label embeddings at start. @defaultValue true */
  warmup: boolean;
  /**
   * MiB the generation step sessions' ORT memory arenas may hold together (WORKER_STEP_MEMORY_MB;
   * 0: never the arena): a step graph over it runs without (slower, less memory). @defaultValue none
   * (0.6 of the machine's memory: src/worker/generate/step-graph.ts, STEP_ARENA_MEMORY_FRACTION)
   */
  stepMemoryMb?: number;
}

/**
 * Where the S3 blob store lives: BLOB_STORE_URL (s3://bucket/prefix) and the usual AWS variables
 * (AWS_ENDPOINT_URL or AWS_ENDPOINT_URL_S3, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
 * AWS_SESSION_TOKEN). Without keys the SDK's default chain (profiles, instance roles) finds them.
 */
export interface S3BlobConfig {
  bucket: string;
  /** Object keys start with it ('' for none); never ends in '/'. */
  keyPrefix: string;
  /** @defaultValue 'us-east-1' */
  region: string;
  /** Absent: AWS's own endpoint for the region. */
  endpoint?: string;
  /** Bucket in the path (MinIO, s3rver, Ceph) rather than the host name. @defaultValue true with an endpoint */
  forcePathStyle: boolean;
  accessKeyId?: string;
  secretAccessKey?: string;
  sessionToken?: string;
  /** How often expired blobs are deleted (BLOB_SWEEP_INTERVAL_SECONDS; 0: never). @defaultValue 600 */
  sweepIntervalSeconds: number;
  /**
   * The playground sends browsers to presigned URLs instead of relaying bytes (BLOB_PRESIGNED_URLS);
   * only for a store the browsers can reach. @defaultValue false
   */
  presignedUrls: boolean;
}

export type Env = Readonly<Record<string, string | undefined>>;

// Docker env files and shells often set a variable to '' to mean "unset".
const unsetIfEmpty = (v: unknown) => (typeof v === 'string' && v.trim() === '' ? undefined : v);

const optionalString = () => z.preprocess(unsetIfEmpty, z.string().optional());
const stringWithDefault = (def: string) => z.preprocess(unsetIfEmpty, z.string().default(def));
/** 'fp32' (the default) or 'int8', any case. */
const precisionVar = () =>
  z.preprocess(
    (v) => (typeof unsetIfEmpty(v) === 'string' ? (v as string).toLowerCase() : undefined),
    z.enum(['fp32', 'int8'], { error: "must be 'fp32' or 'int8'" }).default('fp32'),
  );
const intVar = (def: number, min: number, max: number) =>
  z.preprocess(unsetIfEmpty, z.coerce.number().int().min(min).max(max).default(def));
const numberVar = (def: number, min: number, max: number) =>
  z.preprocess(unsetIfEmpty, z.coerce.number().min(min).max(max).default(def));
const urlVar = (protocols: RegExp) => z.preprocess(unsetIfEmpty, z.url({ protocol: protocols }).optional());

const envSchema = z.object({
  REDIS_URL: urlVar(/^rediss?$/),
  QUEUE_PREFIX: z.preprocess(
    unsetIfEmpty,
    z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,40}$/, 'letters, digits, _ and - only (at most 40)')
      .default('vqclip'),
  ),
  DATABASE_URL: urlVar(/^postgres(ql)?$/),
  DATABASE_POOL_SIZE: intVar(10, 1, 1000),
  DATA_DIR: stringWithDefault('./data'),
  MODELS_DIR: stringWithDefault('./models'),
  ORT_PROVIDERS: z.preprocess(
    unsetIfEmpty,
    z
      .string()
      .default('cpu')
      .transform((s) => s.split(',').map((p) => p.trim().toLowerCase()))
      .pipe(z.array(z.enum(['cuda', 'cpu'], { error: "each provider must be 'cuda' or 'cpu'" })).min(1)),
  ),
  ORT_INTRA_OP_THREADS: intVar(0, 0, 1024),
  ORT_INTER_OP_THREADS: intVar(0, 0, 1024),
  CLIP_IMAGE_PRECISION: precisionVar(),
  DALLE_PRECISION: precisionVar(),
  ORT_ALLOW_SPINNING: z.preprocess(
    unsetIfEmpty,
    z
      .enum(['true', 'false', '1', '0'], { error: 'must be true or false' })
      .default('false')
      .transform((v) => v === 'true' || v === '1'),
  ),
  QUOTA_CONCURRENT_JOBS: intVar(2, 0, 1000),
  QUOTA_JOBS_PER_HOUR: intVar(30, 0, 100_000),
  QUOTA_LIGHT_CONCURRENT_JOBS: intVar(8, 0, 1000),
  QUOTA_LIGHT_JOBS_PER_HOUR: intVar(600, 0, 1_000_000),
  BLOB_TTL_SECONDS: intVar(86_400, 10, 30 * 86_400),
  BLOB_MAX_BYTES: intVar(25 * 1024 * 1024, 1024, 512 * 1024 * 1024),
  BLOB_STORE_URL: z.preprocess(
    unsetIfEmpty,
    z
      .string()
      .regex(
        /^(redis|s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/[A-Za-z0-9_./-]*)?)$/,
        "must be 'redis' or s3://bucket/prefix (a bucket name of 3-63 lowercase letters, digits, '.' and '-')",
      )
      .optional(),
  ),
  BLOB_SWEEP_INTERVAL_SECONDS: intVar(600, 0, 7 * 86_400),
  BLOB_PRESIGNED_URLS: z.preprocess(
    unsetIfEmpty,
    z
      .enum(['true', 'false', '1', '0'], { error: 'must be true or false' })
      .default('false')
      .transform((v) => v === 'true' || v === '1'),
  ),
  BLOB_S3_FORCE_PATH_STYLE: z.preprocess(
    unsetIfEmpty,
    z
      .enum(['true', 'false', '1', '0'], { error: 'must be true or false' })
      .optional()
      .transform((v) => (v === undefined ? undefined : v === 'true' || v === '1')),
  ),
  AWS_ENDPOINT_URL: urlVar(/^https?$/),
  AWS_ENDPOINT_URL_S3: urlVar(/^https?$/),
  AWS_REGION: optionalString(),
  AWS_DEFAULT_REGION: optionalString(),
  AWS_ACCESS_KEY_ID: optionalString(),
  AWS_SECRET_ACCESS_KEY: optionalString(),
  AWS_SESSION_TOKEN: optionalString(),
  REDIS_MEMORY_HIGH_WATER: intVar(90, 10, 99),
  DISCORD_TOKEN: optionalString(),
  DISCORD_APPLICATION_ID: z.preprocess(
    unsetIfEmpty,
    z
      .string()
      .regex(/^\d{5,25}$/, 'must be the numeric application id')
      .optional(),
  ),
  DISCORD_API_URL: urlVar(/^https?$/),
  DISCORD_CDN_URL: urlVar(/^https?$/),
  DISCORD_GUILD_ID: z.preprocess(
    unsetIfEmpty,
    z
      .string()
      .regex(/^\d{5,25}$/, 'must be a numeric guild id')
      .optional(),
  ),
  DISCORD_SHARD_COUNT: z.preprocess(unsetIfEmpty, z.coerce.number().int().min(1).max(4096).optional()),
  DISCORD_SHARD_IDS: z.preprocess(
    unsetIfEmpty,
    z
      .string()
      .regex(/^\d+(,\d+)*$/, 'must be shard ids separated by commas, e.g. 0,1')
      .optional()
      .transform((v) => v?.split(',').map(Number)),
  ),
  SLACK_BOT_TOKEN: z.preprocess(
    unsetIfEmpty,
    z.string().startsWith('xoxb-', 'must start with xoxb-').optional(),
  ),
  SLACK_SIGNING_SECRET: optionalString(),
  SLACK_API_URL: urlVar(/^https?$/),
  SLACK_PORT: intVar(3001, 1, 65_535),
  SLACK_PREVIEW_IMAGE_URLS: z.preprocess(
    unsetIfEmpty,
    z
      .enum(['true', 'false', '1', '0'], { error: 'must be true or false' })
      .default('false')
      .transform((v) => v === 'true' || v === '1'),
  ),
  SLACK_APP_TOKEN: z.preprocess(
    unsetIfEmpty,
    z.string().startsWith('xapp-', 'must start with xapp-').optional(),
  ),
  PORT: intVar(3000, 1, 65_535),
  HOST: stringWithDefault('127.0.0.1'),
  PLAYGROUND_PASSWORD: z.preprocess(
    unsetIfEmpty,
    z.string().min(12, 'must be at least 12 characters (it guards the job dashboard)').optional(),
  ),
  METRICS_HOST: stringWithDefault('127.0.0.1'),
  METRICS_PORT: z.preprocess(unsetIfEmpty, z.coerce.number().int().min(0).max(65_535).optional()),
  WORKER_METRICS_PORT: z.preprocess(unsetIfEmpty, z.coerce.number().int().min(0).max(65_535).optional()),
  LOG_LEVEL: z.preprocess(
    (v) => (typeof unsetIfEmpty(v) === 'string' ? (v as string).toLowerCase() : undefined),
    z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  ),
  WORKER_QUEUES: z.preprocess(
    unsetIfEmpty,
    z
      .string()
      .default(jobKinds.join(','))
      .transform((s) => [...new Set(s.split(',').map((q) => q.trim()))])
      .pipe(z.array(z.enum(jobKinds, { error: `each queue must be one of ${jobKinds.join(', ')}` })).min(1)),
  ),
  WORKER_IMAGINE_CONCURRENCY: intVar(1, 1, 64),
  WORKER_CLASSIFY_CONCURRENCY: intVar(16, 1, 1024),
  WORKER_EMBED_CONCURRENCY: intVar(16, 1, 1024),
  WORKER_SEARCH_CONCURRENCY: intVar(4, 1, 1024),
  WORKER_DELETE_CONCURRENCY: intVar(4, 1, 1024),
  WORKER_CHANNEL_STATE_CONCURRENCY: intVar(4, 1, 1024),
  WORKER_LOCK_DURATION_MS: intVar(30_000, 200, 3_600_000),
  WORKER_STALLED_INTERVAL_MS: intVar(30_000, 100, 3_600_000),
  WORKER_MAX_STALLED_COUNT: intVar(1, 0, 100),
  WORKER_MICRO_BATCH: intVar(16, 1, 256),
  WORKER_STEP_MEMORY_MB: z.preprocess(
    unsetIfEmpty,
    z.coerce
      .number()
      .int()
      .min(0)
      .max(16 * 2 ** 20)
      .optional(),
  ),
  WORKER_BATCH_WAIT_MS: intVar(5, 0, 1000),
  WORKER_IMAGINE_TIME_BUDGET_MS: intVar(20 * 60_000, 1000, 24 * 3_600_000),
  WORKER_SHUTDOWN_GRACE_MS: intVar(10_000, 0, 3_600_000),
  WORKER_PREVIEW_TTL_SECONDS: intVar(3600, 10, 7 * 86_400),
  WORKER_WARMUP: z.preprocess(
    unsetIfEmpty,
    z
      .enum(['true', 'false', '1', '0'], { error: 'must be true or false' })
      .default('true')
      .transform((v) => v === 'true' || v === '1'),
  ),
  SAFETY_CHECK: z.preprocess(
    (v) => (typeof unsetIfEmpty(v) === 'string' ? (v as string).toLowerCase() : undefined),
    z
      .enum(['on', 'off', 'true', 'false', '1', '0'], { error: 'must be on or off' })
      .default('on')
      .transform((v) => v === 'on' || v === 'true' || v === '1'),
  ),
  SAFETY_MODE: z.preprocess(
    (v) => (typeof unsetIfEmpty(v) === 'string' ? (v as string).toLowerCase() : undefined),
    z.enum(['off', 'spoiler', 'block'], { error: "must be 'off', 'spoiler' or 'block'" }).default('spoiler'),
  ),
  SAFETY_THRESHOLD: numberVar(0.5, 0, 1),
  SAFETY_PROMPTS_FILE: optionalString(),
});

const urlHints: Record<string, string> = {
  REDIS_URL: 'must be a URL like redis://host:6379 (or rediss:// for TLS)',
  DATABASE_URL: 'must be a URL like postgres://user:password@host:5432/db',
};

/**
 * Validates the environment and returns the typed configuration. Throws a ConfigError that lists
 * every bad variable at once (not only the first), so one restart fixes them all.
 */
export function loadConfig(env: Env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const variable = String(issue.path[0] ?? '(environment)');
      const message =
        issue.code === 'invalid_format' && urlHints[variable] ? urlHints[variable] : issue.message;
      return { variable, message };
    });
    throw new ConfigError(problems);
  }
  const e = parsed.data;
  const discordShards = shardsOf(e.DISCORD_SHARD_IDS, e.DISCORD_SHARD_COUNT);
  // CPU is the fallback the session layer retries with when CUDA is missing, so it is always last.
  const providers = [...new Set<OrtProvider>([...e.ORT_PROVIDERS.filter((p) => p !== 'cpu'), 'cpu'])];
  return {
    ...(e.REDIS_URL === undefined ? {} : { redisUrl: e.REDIS_URL }),
    queuePrefix: e.QUEUE_PREFIX,
    ...(e.DATABASE_URL === undefined ? {} : { databaseUrl: e.DATABASE_URL }),
    databasePoolSize: e.DATABASE_POOL_SIZE,
    dataDir: e.DATA_DIR,
    modelsDir: e.MODELS_DIR,
    ortProviders: providers,
    ortIntraOpThreads: e.ORT_INTRA_OP_THREADS,
    ortInterOpThreads: e.ORT_INTER_OP_THREADS,
    ortAllowSpinning: e.ORT_ALLOW_SPINNING,
    clipImagePrecision: e.CLIP_IMAGE_PRECISION,
    dallePrecision: e.DALLE_PRECISION,
    // QUOTA_CONCURRENT_JOBS and QUOTA_JOBS_PER_HOUR kept their names when light jobs got a budget.
    quota: {
      imagine: { concurrent: e.QUOTA_CONCURRENT_JOBS, perWindow: e.QUOTA_JOBS_PER_HOUR },
      light: { concurrent: e.QUOTA_LIGHT_CONCURRENT_JOBS, perWindow: e.QUOTA_LIGHT_JOBS_PER_HOUR },
    },
    blobs: {
      ttlSeconds: e.BLOB_TTL_SECONDS,
      maxBytes: e.BLOB_MAX_BYTES,
      ...(e.BLOB_STORE_URL === undefined || e.BLOB_STORE_URL === 'redis' ? {} : { s3: s3BlobConfig(e) }),
    },
    redisMemoryHighWater: e.REDIS_MEMORY_HIGH_WATER / 100,
    discord: {
      ...definedOnly({
        token: e.DISCORD_TOKEN,
        applicationId: e.DISCORD_APPLICATION_ID,
        apiUrl: e.DISCORD_API_URL,
        cdnUrl: e.DISCORD_CDN_URL,
        guildId: e.DISCORD_GUILD_ID,
      }),
      ...(discordShards === undefined ? {} : { shards: discordShards }),
    },
    slack: {
      ...definedOnly({
        botToken: e.SLACK_BOT_TOKEN,
        signingSecret: e.SLACK_SIGNING_SECRET,
        appToken: e.SLACK_APP_TOKEN,
        apiUrl: e.SLACK_API_URL,
      }),
      port: e.SLACK_PORT,
      ...(e.SLACK_PREVIEW_IMAGE_URLS ? { previewImageUrls: true } : {}),
    },
    port: e.PORT,
    host: e.HOST,
    ...(e.PLAYGROUND_PASSWORD === undefined ? {} : { playgroundPassword: e.PLAYGROUND_PASSWORD }),
    metrics: {
      host: e.METRICS_HOST,
      ...(e.METRICS_PORT === undefined ? {} : { port: e.METRICS_PORT }),
      ...(e.WORKER_METRICS_PORT === undefined ? {} : { workerPort: e.WORKER_METRICS_PORT }),
    },
    logLevel: e.LOG_LEVEL,
    worker: {
      queues: e.WORKER_QUEUES,
      concurrency: {
        imagine: e.WORKER_IMAGINE_CONCURRENCY,
        classify: e.WORKER_CLASSIFY_CONCURRENCY,
        'embed-image': e.WORKER_EMBED_CONCURRENCY,
        search: e.WORKER_SEARCH_CONCURRENCY,
        'delete-image': e.WORKER_DELETE_CONCURRENCY,
        'channel-state': e.WORKER_CHANNEL_STATE_CONCURRENCY,
      },
      lockDurationMs: e.WORKER_LOCK_DURATION_MS,
      stalledIntervalMs: e.WORKER_STALLED_INTERVAL_MS,
      maxStalledCount: e.WORKER_MAX_STALLED_COUNT,
      microBatch: e.WORKER_MICRO_BATCH,
      batchWaitMs: e.WORKER_BATCH_WAIT_MS,
      imagineTimeBudgetMs: e.WORKER_IMAGINE_TIME_BUDGET_MS,
      shutdownGraceMs: e.WORKER_SHUTDOWN_GRACE_MS,
      previewTtlSeconds: e.WORKER_PREVIEW_TTL_SECONDS,
      warmup: e.WORKER_WARMUP,
      ...(e.WORKER_STEP_MEMORY_MB === undefined ? {} : { stepMemoryMb: e.WORKER_STEP_MEMORY_MB }),
    },
    safety: {
      check: e.SAFETY_CHECK,
      mode: e.SAFETY_MODE,
      threshold: e.SAFETY_THRESHOLD,
      ...(e.SAFETY_PROMPTS_FILE === undefined ? {} : { promptsFile: e.SAFETY_PROMPTS_FILE }),
    },
  };
}

/** DISCORD_SHARD_IDS of DISCORD_SHARD_COUNT (every shard when only the count is set). */
function shardsOf(ids: number[] | undefined, count: number | undefined): Config['discord']['shards'] {
  if (ids === undefined && count === undefined) return undefined;
  if (count === undefined)
    throw new ConfigError([
      { variable: 'DISCORD_SHARD_IDS', message: 'needs DISCORD_SHARD_COUNT (the shards of all processes)' },
    ]);
  const all = ids ?? Array.from({ length: count }, (_, i) => i);
  const bad = all.filter((id) => id >= count);
  if (bad.length > 0)
    throw new ConfigError([
      {
        variable: 'DISCORD_SHARD_IDS',
        message: `shard ${bad.join(', ')} is not below DISCORD_SHARD_COUNT (${count}): ids run 0..${count - 1}`,
      },
    ]);
  return { ids: [...new Set(all)], count };
}

/** BLOB_STORE_URL (already checked to be s3://bucket[/prefix]) and the AWS variables. */
function s3BlobConfig(e: z.infer<typeof envSchema>): S3BlobConfig {
  const url = new URL(e.BLOB_STORE_URL!);
  // AWS_ENDPOINT_URL_S3 wins over AWS_ENDPOINT_URL, as in the AWS SDKs and CLI.
  const endpoint = e.AWS_ENDPOINT_URL_S3 ?? e.AWS_ENDPOINT_URL;
  return {
    bucket: url.hostname,
    keyPrefix: url.pathname.replace(/^\/+|\/+$/g, ''),
    region: e.AWS_REGION ?? e.AWS_DEFAULT_REGION ?? 'us-east-1',
    ...(endpoint === undefined ? {} : { endpoint }),
    forcePathStyle: e.BLOB_S3_FORCE_PATH_STYLE ?? endpoint !== undefined,
    ...definedOnly({
      accessKeyId: e.AWS_ACCESS_KEY_ID,
      secretAccessKey: e.AWS_SECRET_ACCESS_KEY,
      sessionToken: e.AWS_SESSION_TOKEN,
    }),
    sweepIntervalSeconds: e.BLOB_SWEEP_INTERVAL_SECONDS,
    presignedUrls: e.BLOB_PRESIGNED_URLS,
  };
}

const REDACTED = '[redacted]';

/** A copy safe to log: tokens replaced, passwords in connection URLs masked. */
export function redactedConfig(config: Config): Config {
  const redact = (v: string | undefined) => (v === undefined ? undefined : REDACTED);
  return {
    ...config,
    ...(config.redisUrl === undefined ? {} : { redisUrl: redactUrl(config.redisUrl) }),
    ...(config.databaseUrl === undefined ? {} : { databaseUrl: redactUrl(config.databaseUrl) }),
    ...(config.playgroundPassword === undefined ? {} : { playgroundPassword: REDACTED }),
    ...(config.blobs.s3 === undefined
      ? {}
      : {
          blobs: {
            ...config.blobs,
            s3: {
              ...config.blobs.s3,
              ...definedOnly({
                secretAccessKey: redact(config.blobs.s3.secretAccessKey),
                sessionToken: redact(config.blobs.s3.sessionToken),
              }),
            },
          },
        }),
    discord: { ...config.discord, ...definedOnly({ token: redact(config.discord.token) }) },
    slack: {
      ...config.slack,
      ...definedOnly({
        botToken: redact(config.slack.botToken),
        signingSecret: redact(config.slack.signingSecret),
        appToken: redact(config.slack.appToken),
      }),
    },
  };
}

function redactUrl(raw: string): string {
  try {
    const url = new URL(raw);
    if (url.password) url.password = REDACTED;
    return url.toString();
  } catch {
    return REDACTED;
  }
}

// exactOptionalPropertyTypes: a key must be absent, not present with `undefined`.
function definedOnly<T extends Record<string, string | undefined>>(obj: T): { [K in keyof T]?: string } {
  const out: { [K in keyof T]?: string } = {};
  for (const [k, v] of Object.entries(obj)) if (v !== undefined) out[k as keyof T] = v;
  return out;
}
