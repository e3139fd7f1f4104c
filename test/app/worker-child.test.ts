// What npm start hands its worker child: the config without the secrets only the bot side uses.
import { describe, expect, it } from 'vitest';
import { workerConfig } from '../../src/app/worker-child.js';
import { loadConfig } from '../../src/shared/config.js';

describe('workerConfig', () => {
  it('leaves out the chat secrets and the playground password, keeps the rest', () => {
    const secrets = {
      DISCORD_TOKEN: 'discord-token-secret-1',
      SLACK_BOT_TOKEN: 'xoxb-slack-secret-2',
      SLACK_SIGNING_SECRET: 'slack-signing-secret-3',
      SLACK_APP_TOKEN: 'xapp-slack-secret-4',
      PLAYGROUND_PASSWORD: 'playground-password-5',
    };
    const config = loadConfig({
      ...secrets,
      REDIS_URL: 'redis://127.0.0.1:6390',
      DISCORD_APPLICATION_ID: '123456789012345678',
    });
    const child = workerConfig(config);
    const text = JSON.stringify(child);
    for (const secret of Object.values(secrets)) expect(text).not.toContain(secret);
    expect(child.redisUrl).toBe(config.redisUrl);
    expect(child.modelsDir).toBe(config.modelsDir);
    expect(child.slack.port).toBe(config.slack.port);
  });
});
