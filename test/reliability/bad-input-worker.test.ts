// Bad input that reaches the worker: job payloads no bot would send (Redis is a trust boundary too),
// and model folders with a tensor missing or of the wrong shape. A bad payload fails once, is not
// retried, says why in its failedReason and in one log line, and the worker serves the next job; a
// bad model folder is one sentence naming the tensor and the file, before anything is served.
import { execFile } from 'node:child_process';
import { cp } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type Job, Queue } from 'bullmq';
import { afterEach, describe, expect, it } from 'vitest';
import { renderError } from '../../src/bots/core/render.js';
import { CodedError, parseSerializedError } from '../../src/shared/errors.js';
import type { JobKind } from '../../src/shared/jobs.js';
import { checkModelFolder } from '../../src/worker/models/check.js';
import { encodeSafetensors, Weights } from '../../src/worker/models/weights.js';
import { loadModels } from '../../src/worker/runtime/models.js';
import { collectingLogger } from '../bots/discord/harness.js';
import { useBotStack } from '../helpers/bot-stack.js';
import { entryArgs } from '../helpers/entry.js';
import { testPrefix, useRedis } from '../helpers/redis.js';
import { tempDir, writeTinyModels } from '../helpers/worker-process.js';

const stacks = useBotStack();
const redis = useRedis();
const queues: Queue[] = [];
afterEach(async () => {
  for (const q of queues.splice(0)) await q.close();
});

async function settled(job: Job, timeoutMs = 20_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = await job.getState();
    if (state === 'completed' || state === 'failed') return state;
    if (Date.now() > deadline) throw new Error(`job ${job.id} still ${state} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('job payloads that fail their schema', () => {
  it('fail once without retries, with the reason in failedReason and the log; the worker goes on', async () => {
    const logger = collectingLogger();
    const stack = await stacks.start({ logger });
    const queue = (kind: JobKind) => {
      const q = new Queue(kind, { connection: stack.services.connection, prefix: stack.prefix });
      queues.push(q);
      return q;
    };
    const scope = { platform: 'discord', workspace: 'g1', channel: 'c1' };
    const origin = { platform: 'discord', user: 'u1' };
    const bad: [JobKind, unknown, RegExp][] = [
      ['imagine', { prompt: 42, origin }, /^That request is not valid: prompt: /],
      [
        'imagine',
        { prompt: 'a cat', steps: 1e9, size: { width: 65, height: 64 }, origin },
        /steps: .*size\.width: /,
      ],
      ['imagine', { prompt: 'a cat', origin, evil: '$(rm -rf /)' }, /Unrecognized key.*evil/],
      [
        'imagine',
        { prompt: 'x'.repeat(5000), origin },
        /^Your prompt has 5000 characters; the limit is 1000\./,
      ],
      ['imagine', { prompt: 'a cat:', origin }, /^A weight in the prompt is not a number/],
      ['classify', { image: '../../../etc/passwd' }, /image: not a blob key/],
      ['classify', null, /^That request is not valid: /],
      ['embed-image', { ...scope, image: 'blob:x' }, /message: .*file: /],
      ['search', { ...scope, query: 'cats', image: 'blob:y', k: 5 }, /give either a query or an image/],
      ['delete-image', { ...scope }, /name either an image id or a message/],
      ['channel-state', { ...scope, set: { indexing: 'yes' } }, /set\.indexing: /],
    ];
    const jobs = await Promise.all(
      bad.map(([kind, data]) =>
        queue(kind).add(kind, data, { attempts: 3, backoff: { type: 'fixed', delay: 10 } }),
      ),
    );
    for (const [i, job] of jobs.entries()) {
      const [kind, , sentence] = bad[i] as [JobKind, unknown, RegExp];
      expect(await settled(job), kind).toBe('failed');
      const failed = (await queue(kind).getJob(job.id ?? '')) as Job;
      // A user's mistake is not retried: one attempt of the three allowed.
      expect(failed.attemptsMade, kind).toBe(1);
      const error = parseSerializedError(failed.failedReason);
      expect(['bad_input', 'prompt_too_long'], kind).toContain(error.code);
      expect(renderError(error), kind).toMatch(sentence);
      expect(renderError(error)).not.toMatch(/\n\s+at /);
      const line = logger.lines.find(
        (l) => l.msg === 'job failed' && (l.obj as { jobId?: string }).jobId === job.id,
      );
      expect(line?.obj, kind).toMatchObject({ code: error.code });
    }
    // Nothing crashed: the worker takes the next good job of a queue that just refused one.
    const good = await queue('channel-state').add('channel-state', { ...scope });
    expect(await settled(good)).toBe('completed');
  });
});

describe('model folders with a bad tensor', () => {
  /** Tiny models in a temp folder, the CLIP file rewritten by `edit` (name, shape, data) per tensor. */
  async function brokenModels(
    edit: (t: {
      name: string;
      shape: readonly number[];
      data: Float32Array;
    }) => { name: string; shape: readonly number[]; data: Float32Array } | undefined,
  ) {
    const dir = await tempDir('bad-models');
    writeTinyModels(dir.path);
    const file = join(dir.path, 'clip', 'model.safetensors');
    const weights = Weights.fromFile(file);
    const tensors = weights
      .names()
      .map((name) => edit({ name, shape: weights.shape(name), data: weights.get(name) }))
      .filter((t) => t !== undefined);
    weights.close();
    const { writeFile } = await import('node:fs/promises');
    await writeFile(file, encodeSafetensors(tensors));
    return dir;
  }

  async function refusal(p: Promise<unknown>): Promise<CodedError> {
    const error = await p.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(CodedError);
    return error as CodedError;
  }

  const MISSING = 'text_projection.weight';
  const RESHAPED = 'visual_projection.weight';

  it('a missing tensor: `models check` lists it and exits 1; the worker refuses to start, naming it and the file', async () => {
    const dir = await brokenModels((t) => (t.name === MISSING ? undefined : t));
    try {
      const check = await checkModelFolder(join(dir.path, 'clip'));
      expect(check.problems).toEqual([
        expect.stringMatching(new RegExp(`^missing ${MISSING} \\[\\d+,\\d+\\]$`)),
      ]);
      const run = promisify(execFile);
      const cli = await run(
        process.execPath,
        entryArgs('src/worker/models/cli.ts', 'check', join(dir.path, 'clip')),
      ).catch((e: { code: number; stdout: string }) => e);
      expect((cli as { code?: number }).code).toBe(1);
      expect((cli as { stdout: string }).stdout).toMatch(
        new RegExp(`missing ${MISSING} .*\\n\\s+1 problems`),
      );
      // The worker process: one line on stderr, no stack trace, exit code 1, before it serves anything.
      const data = await tempDir('bad-models-data');
      try {
        const env = Object.fromEntries(
          Object.entries(process.env).filter(
            ([k]) => !/^(DATABASE_URL|REDIS_URL|QUEUE_PREFIX|WORKER_|ORT_|LOG_LEVEL)/.test(k),
          ),
        );
        const worker = await run(process.execPath, entryArgs('src/worker/main.ts'), {
          env: {
            ...env,
            REDIS_URL: redis.url,
            QUEUE_PREFIX: testPrefix(),
            MODELS_DIR: dir.path,
            DATA_DIR: data.path,
            WORKER_WARMUP: 'false',
            ORT_INTRA_OP_THREADS: '1',
          },
          timeout: 30_000,
        }).catch((e: { code: number; stderr: string }) => e);
        expect((worker as { code?: number }).code).toBe(1);
        const stderr = (worker as { stderr: string }).stderr.trim().split('\n');
        expect(stderr).toEqual([
          expect.stringMatching(
            new RegExp(
              `^worker: .*/clip/model\\.safetensors does not fit .*/clip/config\\.json: missing ${MISSING} `,
            ),
          ),
        ]);
      } finally {
        await data.remove();
      }
      const error = await refusal(loadModels(dir.path, { intraOpThreads: 1 }));
      expect(error.code).toBe('model_missing');
      expect(error.message).toMatch(
        new RegExp(`: missing ${MISSING} \\[\\d+,\\d+\\] \\(npm run models -- check `),
      );
      expect(error.message).toContain(join(dir.path, 'clip', 'model.safetensors'));
      // What a user would be told if a job met it: the operator's sentence, not the details.
      expect(renderError(error)).toBe(
        'The models are not installed on the worker yet. An operator needs to add them.',
      );
    } finally {
      await dir.remove();
    }
  });

  it('a mis-shaped tensor: `models check` names both shapes; the worker refuses to load, naming them', async () => {
    let shapes: readonly number[] = [];
    const dir = await brokenModels((t) => {
      if (t.name !== RESHAPED) return t;
      shapes = t.shape;
      return { ...t, shape: [...t.shape].reverse() };
    });
    try {
      const [a, b] = shapes;
      expect(a).not.toBe(b); // a transposed square would not be a mismatch
      const check = await checkModelFolder(join(dir.path, 'clip'));
      expect(check.problems).toEqual([`${RESHAPED}: shape [${b},${a}], expected [${a},${b}]`]);
      const error = await refusal(loadModels(dir.path, { intraOpThreads: 1 }));
      expect(error.code).toBe('config_invalid');
      expect(error.message).toContain(`${RESHAPED}: shape [${b},${a}], expected [${a},${b}]`);
      expect(error.message).toContain(join(dir.path, 'clip', 'model.safetensors'));
    } finally {
      await dir.remove();
    }
  });

  it('the folders the tests break are good before they are broken', async () => {
    const dir = await tempDir('good-models');
    writeTinyModels(dir.path);
    const copy = join(dir.path, 'copy');
    await cp(join(dir.path, 'clip'), copy, { recursive: true });
    try {
      expect((await checkModelFolder(copy)).problems).toEqual([]);
      const w = Weights.fromFile(join(copy, 'model.safetensors'));
      expect(w.has(MISSING) && w.has(RESHAPED)).toBe(true);
      w.close();
    } finally {
      await dir.remove();
    }
  });
});
