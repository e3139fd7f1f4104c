import { describe, expect, it } from 'vitest';
import { loadConfig, redactedConfig } from '../../src/shared/config.js';
import { type CodedError, ConfigError } from '../../src/shared/errors.js';

describe('loadConfig', () => {
  it('applies defaults for an empty environment', () => {
    const c = loadConfig({});
    expect(c).toEqual({
      queuePrefix: 'vqclip',
      databasePoolSize: 10,
      dataDir: './data',
      modelsDir: './models',
      ortProviders: ['cpu'],
      ortIntraOpThreads: 0,
      ortInterOpThreads: 0,
      ortAllowSpinning: false,
      clipImagePrecision: 'fp32',
      dallePrecision: 'fp32',
      quota: { imagine: { concurrent: 2, perWindow: 30 }, light: { concurrent: 8, perWindow: 600 } },
      blobs: { ttlSeconds: 86_400, maxBytes: 25 * 1024 * 1024 },
      redisMemoryHighWater: 0.9,
      discord: {},
      slack: { port: 3001 },
      port: 3000,
      host: '127.0.0.1',
      metrics: { host: '127.0.0.1' },
      logLevel: 'info',
      // Every WORKER_ default: test/worker/runtime/worker-settings.test.ts
      worker: expect.objectContaining({
        queues: ['imagine', 'classify', 'embed-image', 'search', 'delete-image', 'channel-state'],
      }),
      safety: { check: true, mode: 'spoiler', threshold: 0.5 },
    });
    expect('redisUrl' in c).toBe(false);
    expect('databaseUrl' in c).toBe(false);
  });

  it('parses every variable and treats empty strings as unset', () => {
    const c = loadConfig({
      REDIS_URL: 'redis://:secret@redis:6379/1',
      QUEUE_PREFIX: 'prod_1',
      DATABASE_URL: 'postgres://u:pw@db:5432/app',
      DATABASE_POOL_SIZE: '4',
      DATA_DIR: '/var/data',
      MODELS_DIR: '',
      ORT_PROVIDERS: 'CUDA, cpu',
      ORT_INTRA_OP_THREADS: '4',
      ORT_INTER_OP_THREADS: '1',
      ORT_ALLOW_SPINNING: '1',
      CLIP_IMAGE_PRECISION: 'INT8',
      DALLE_PRECISION: 'Int8',
      QUOTA_CONCURRENT_JOBS: '0',
      QUOTA_JOBS_PER_HOUR: '100',
      QUOTA_LIGHT_CONCURRENT_JOBS: '20',
      QUOTA_LIGHT_JOBS_PER_HOUR: '',
      BLOB_TTL_SECONDS: '600',
      BLOB_MAX_BYTES: '2048',
      DISCORD_TOKEN: 'discord-secret',
      SLACK_BOT_TOKEN: 'xoxb-1',
      SLACK_SIGNING_SECRET: 'sign',
      SLACK_APP_TOKEN: 'xapp-1',
      SLACK_API_URL: 'http://127.0.0.1:9999/api/',
      SLACK_PORT: '4001',
      DISCORD_APPLICATION_ID: '123456789012345678',
      DISCORD_API_URL: 'http://127.0.0.1:9998/api',
      DISCORD_CDN_URL: 'http://127.0.0.1:9998',
      DISCORD_GUILD_ID: '223456789012345678',
      PORT: '8080',
      LOG_LEVEL: 'DEBUG',
    });
    expect(c.redisUrl).toBe('redis://:secret@redis:6379/1');
    expect(c.queuePrefix).toBe('prod_1');
    expect(c.databaseUrl).toBe('postgres://u:pw@db:5432/app');
    expect(c.databasePoolSize).toBe(4);
    expect(c.dataDir).toBe('/var/data');
    expect(c.modelsDir).toBe('./models');
    expect(c.ortProviders).toEqual(['cuda', 'cpu']);
    expect([c.ortIntraOpThreads, c.ortInterOpThreads]).toEqual([4, 1]);
    expect(c.ortAllowSpinning).toBe(true);
    expect(c.clipImagePrecision).toBe('int8');
    expect(c.dallePrecision).toBe('int8');
    expect(c.quota).toEqual({
      imagine: { concurrent: 0, perWindow: 100 },
      light: { concurrent: 20, perWindow: 600 },
    });
    expect(c.blobs).toEqual({ ttlSeconds: 600, maxBytes: 2048 });
    expect(c.discord).toEqual({
      token: 'discord-secret',
      applicationId: '123456789012345678',
      apiUrl: 'http://127.0.0.1:9998/api',
      cdnUrl: 'http://127.0.0.1:9998',
      guildId: '223456789012345678',
    });
    expect(c.slack).toEqual({
      botToken: 'xoxb-1',
      signingSecret: 'sign',
      appToken: 'xapp-1',
      apiUrl: 'http://127.0.0.1:9999/api/',
      port: 4001,
    });
    expect(c.port).toBe(8080);
    expect(c.logLevel).toBe('debug');
  });

  it('reads the safety settings: check on or off, presentation mode, threshold, prompts file', () => {
    expect(
      loadConfig({
        SAFETY_CHECK: 'OFF',
        SAFETY_MODE: 'Block',
        SAFETY_THRESHOLD: '0.35',
        SAFETY_PROMPTS_FILE: '/etc/vqclip/safety.json',
      }).safety,
    ).toEqual({ check: false, mode: 'block', threshold: 0.35, promptsFile: '/etc/vqclip/safety.json' });
    expect(loadConfig({ SAFETY_CHECK: '1', SAFETY_MODE: 'off', SAFETY_THRESHOLD: '1' }).safety).toEqual({
      check: true,
      mode: 'off',
      threshold: 1,
    });
    expect(loadConfig({ SAFETY_CHECK: '', SAFETY_THRESHOLD: ' ', SAFETY_PROMPTS_FILE: '' }).safety).toEqual({
      check: true,
      mode: 'spoiler',
      threshold: 0.5,
    });
    let error: CodedError | undefined;
    try {
      loadConfig({ SAFETY_CHECK: 'maybe', SAFETY_MODE: 'blur', SAFETY_THRESHOLD: '1.5' });
    } catch (e) {
      error = e as CodedError;
    }
    const problems = (error?.details.problems ?? []) as { variable: string; message: string }[];
    expect(problems.map((p) => p.variable).sort()).toEqual([
      'SAFETY_CHECK',
      'SAFETY_MODE',
      'SAFETY_THRESHOLD',
    ]);
    expect(error?.message).toContain("SAFETY_MODE: must be 'off', 'spoiler' or 'block'");
    expect(() => loadConfig({ SAFETY_THRESHOLD: 'half' })).toThrow(/SAFETY_THRESHOLD/);
    expect(() => loadConfig({ SAFETY_THRESHOLD: '-0.1' })).toThrow(/SAFETY_THRESHOLD/);
  });

  it('always keeps cpu as the last provider', () => {
    expect(loadConfig({ ORT_PROVIDERS: 'cuda' }).ortProviders).toEqual(['cuda', 'cpu']);
    expect(loadConfig({ ORT_PROVIDERS: 'cpu,cuda' }).ortProviders).toEqual(['cuda', 'cpu']);
  });

  it('lists every bad variable in one error', () => {
    let error: unknown;
    try {
      loadConfig({
        REDIS_URL: 'http://localhost',
        DATABASE_URL: 'nope',
        DATABASE_POOL_SIZE: '0',
        PORT: '70000',
        QUOTA_JOBS_PER_HOUR: 'many',
        QUOTA_LIGHT_CONCURRENT_JOBS: '-1',
        ORT_PROVIDERS: 'cuda,tpu',
        ORT_ALLOW_SPINNING: 'yes',
        CLIP_IMAGE_PRECISION: 'int4',
        DALLE_PRECISION: 'bf16',
        QUEUE_PREFIX: 'has:colon',
        LOG_LEVEL: 'loud',
        SLACK_BOT_TOKEN: 'xoxp-user-token',
      });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const coded = error as CodedError;
    expect(coded.code).toBe('config_invalid');
    const variables = (coded.details.problems as { variable: string }[]).map((p) => p.variable).sort();
    expect(variables).toEqual([
      'CLIP_IMAGE_PRECISION',
      'DALLE_PRECISION',
      'DATABASE_POOL_SIZE',
      'DATABASE_URL',
      'LOG_LEVEL',
      'ORT_ALLOW_SPINNING',
      'ORT_PROVIDERS',
      'PORT',
      'QUEUE_PREFIX',
      'QUOTA_JOBS_PER_HOUR',
      'QUOTA_LIGHT_CONCURRENT_JOBS',
      'REDIS_URL',
      'SLACK_BOT_TOKEN',
    ]);
    expect(coded.message).toContain('REDIS_URL: must be a URL like redis://host:6379');
    expect(coded.message).toContain('SLACK_BOT_TOKEN: must start with xoxb-');
  });

  it('reads an S3 blob store from BLOB_STORE_URL and the AWS variables, and redacts its secret', () => {
    expect(loadConfig({ BLOB_STORE_URL: 'redis' }).blobs.s3).toBeUndefined();
    const c = loadConfig({
      BLOB_STORE_URL: 's3://vqclip-images/prod/blobs/',
      AWS_ENDPOINT_URL: 'http://minio:9000',
      AWS_DEFAULT_REGION: 'eu-west-1',
      AWS_ACCESS_KEY_ID: 'AKIA1',
      AWS_SECRET_ACCESS_KEY: 'shh',
      BLOB_SWEEP_INTERVAL_SECONDS: '60',
      REDIS_MEMORY_HIGH_WATER: '80',
    });
    expect(c.blobs.s3).toEqual({
      bucket: 'vqclip-images',
      keyPrefix: 'prod/blobs',
      region: 'eu-west-1',
      endpoint: 'http://minio:9000',
      forcePathStyle: true,
      accessKeyId: 'AKIA1',
      secretAccessKey: 'shh',
      sweepIntervalSeconds: 60,
      presignedUrls: false,
    });
    expect(c.redisMemoryHighWater).toBe(0.8);
    expect(redactedConfig(c).blobs.s3?.secretAccessKey).toBe('[redacted]');
    expect(JSON.stringify(redactedConfig(c))).not.toContain('shh');
    // AWS's own endpoint: virtual-hosted buckets, the SDK's credential chain; the S3 endpoint wins.
    const aws = loadConfig({ BLOB_STORE_URL: 's3://bucket1', AWS_REGION: 'us-west-2' }).blobs.s3;
    expect(aws).toEqual({
      bucket: 'bucket1',
      keyPrefix: '',
      region: 'us-west-2',
      forcePathStyle: false,
      sweepIntervalSeconds: 600,
      presignedUrls: false,
    });
    const both = loadConfig({
      BLOB_STORE_URL: 's3://bucket1',
      AWS_ENDPOINT_URL: 'http://a:1',
      AWS_ENDPOINT_URL_S3: 'http://b:2',
    });
    expect(both.blobs.s3?.endpoint).toBe('http://b:2');
    expect(
      loadConfig({ BLOB_STORE_URL: 's3://bucket1', BLOB_PRESIGNED_URLS: 'true' }).blobs.s3?.presignedUrls,
    ).toBe(true);
    expect(() => loadConfig({ BLOB_STORE_URL: 'http://bucket' })).toThrow(/BLOB_STORE_URL.*s3:\/\/bucket/s);
    expect(() => loadConfig({ BLOB_STORE_URL: 's3://Bad_Bucket' })).toThrow(/BLOB_STORE_URL/);
  });

  it('redacts tokens and URL passwords', () => {
    const c = loadConfig({
      REDIS_URL: 'redis://:hunter2@redis:6379',
      DATABASE_URL: 'postgres://u:hunter2@db/app',
      DISCORD_TOKEN: 'hunter2',
      SLACK_SIGNING_SECRET: 'hunter2',
    });
    const text = JSON.stringify(redactedConfig(c));
    expect(text).not.toContain('hunter2');
    const r = redactedConfig(c);
    expect(r.discord.token).toBe('[redacted]');
    expect(r.slack).toEqual({ signingSecret: '[redacted]', port: 3001 });
    expect(r.redisUrl).toContain('@redis:6379');
    expect(r.databaseUrl).toContain('u:');
    // The original is untouched.
    expect(c.discord.token).toBe('hunter2');
  });

  it('reads the playground password and the metrics listeners, and redacts the password', () => {
    const c = loadConfig({
      PLAYGROUND_PASSWORD: 'correct horse battery',
      METRICS_HOST: '0.0.0.0',
      METRICS_PORT: '9464',
      WORKER_METRICS_PORT: '0',
    });
    expect(c.playgroundPassword).toBe('correct horse battery');
    expect(c.metrics).toEqual({ host: '0.0.0.0', port: 9464, workerPort: 0 });
    expect(JSON.stringify(redactedConfig(c))).not.toContain('horse');
    expect(redactedConfig(c).playgroundPassword).toBe('[redacted]');
    expect('playgroundPassword' in loadConfig({ PLAYGROUND_PASSWORD: ' ' })).toBe(false);
    const error = (() => {
      try {
        loadConfig({ PLAYGROUND_PASSWORD: 'short', METRICS_PORT: 'x' });
      } catch (e) {
        return e as CodedError;
      }
    })();
    expect(error?.message).toContain('PLAYGROUND_PASSWORD: must be at least 12 characters');
    expect(error?.message).toContain('METRICS_PORT');
  });
});
