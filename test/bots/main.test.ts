// The bot-only entry (`npm run bot`, the compose `bot` service) as its own process: with chat tokens
// it connects to Discord (gateway) and Slack (Socket Mode), here the local fakes, beside the
// playground; a slash command on Discord is answered by it; SIGTERM stops it cleanly.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { freePort } from '../../src/app/redis-server.js';
import { openConnection } from '../../src/shared/queues.js';
import { entryArgs } from '../helpers/entry.js';
import { startFakeDiscord } from '../helpers/fake-discord/index.js';
import { startFakeSlack } from '../helpers/fake-slack/index.js';
import { useProcessCleanup } from '../helpers/processes.js';
import { useRedis } from '../helpers/redis.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const redis = useRedis();
const cleanup = useProcessCleanup();

function start(env: Record<string, string>): {
  child: ChildProcess;
  stderr: () => string;
  stdout: () => string;
} {
  const base = { ...process.env };
  for (const k of Object.keys(base)) {
    if (/^(REDIS_URL|DATABASE_URL|LOG_LEVEL|PORT|QUEUE_PREFIX|DISCORD_|SLACK_)/.test(k)) delete base[k];
  }
  const child = spawn(process.execPath, entryArgs('src/bots/main.ts'), {
    cwd: ROOT,
    env: { ...base, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  cleanup.track(child);
  let err = '';
  let out = '';
  child.stderr!.on('data', (c: Buffer) => {
    err += c.toString();
  });
  child.stdout!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  return { child, stderr: () => err, stdout: () => out };
}

describe('bot process', () => {
  it('connects every configured chat adapter beside the playground and stops on SIGTERM', {
    timeout: 90_000,
  }, async () => {
    const discord = await startFakeDiscord({ heartbeatIntervalMs: 1000 });
    const slack = await startFakeSlack();
    try {
      const dir = await cleanup.tempDir('vqclip-bots-');
      const port = await freePort();
      const bot = start({
        REDIS_URL: redis.url,
        QUEUE_PREFIX: `bots${port}`,
        PORT: String(port),
        DATA_DIR: dir,
        DISCORD_TOKEN: discord.token,
        DISCORD_APPLICATION_ID: discord.applicationId,
        DISCORD_API_URL: discord.apiUrl,
        DISCORD_CDN_URL: discord.cdnUrl,
        SLACK_BOT_TOKEN: slack.botToken,
        SLACK_APP_TOKEN: slack.appToken,
        SLACK_API_URL: slack.apiUrl,
        // Every log line, so that the check below sees everything the process could leak.
        LOG_LEVEL: 'trace',
      });
      const exited = once(bot.child, 'exit');
      await Promise.race([
        Promise.all([
          discord.waitForReady(1, { timeoutMs: 60_000 }),
          slack.socket.waitForConnection(1, 60_000),
        ]),
        exited.then(() => {
          throw new Error(`the bot exited: ${bot.stderr()}`);
        }),
      ]);
      expect(slack.callsTo('auth.test').length).toBeGreaterThan(0);
      // The playground answers too.
      for (let i = 0; i < 100; i++) {
        const ok = await fetch(`http://127.0.0.1:${port}/api/info`).then(
          (r) => r.ok,
          () => false,
        );
        if (ok) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect((await fetch(`http://127.0.0.1:${port}/api/info`)).ok).toBe(true);

      // No worker runs here: a /queue answers from Redis alone (acked within Discord's 3 s).
      const handle = discord.interact(discord.slashCommand({ name: 'queue' }));
      await handle.waitForAck();
      expect(handle.ackType).toBeDefined();

      bot.child.kill('SIGTERM');
      const [code] = await exited;
      expect(code).toBe(0);
      expect(bot.stderr()).not.toMatch(/Error|error/);
      // Secrets never reach the logs, nor Redis (job data, in-flight entries, settings).
      expect(bot.stdout()).toContain('"msg":"starting"');
      const secrets = [discord.token, slack.botToken, slack.appToken];
      for (const secret of secrets) {
        expect(bot.stdout()).not.toContain(secret);
        expect(bot.stderr()).not.toContain(secret);
      }
      const redisConnection = await openConnection(redis.url);
      try {
        const dump = await redisConnection.eval(
          "local out = {} for _, k in ipairs(redis.call('KEYS', '*')) do local t = redis.call('TYPE', k).ok if t == 'string' then table.insert(out, redis.call('GET', k)) elseif t == 'hash' then for _, v in ipairs(redis.call('HGETALL', k)) do table.insert(out, v) end elseif t == 'list' then for _, v in ipairs(redis.call('LRANGE', k, 0, -1)) do table.insert(out, v) end end end return table.concat(out, '\\n')",
          0,
        );
        expect(String(dump).length).toBeGreaterThan(0);
        for (const secret of secrets) expect(String(dump)).not.toContain(secret);
      } finally {
        await redisConnection.quit();
      }
    } finally {
      await discord.close();
      await slack.close();
    }
  });
});
