// Settings an admin changes from chat (Discord /settings, the Slack App Home): a workspace's defaults
// (preset, safety mode, whether age-restricted channels may show flagged images) live in Redis
// beside the queues; a channel's indexing opt-in and backfill cursor live in the database's
// channel_state, reached through channel-state jobs (adapters never open the database).
import type { Redis } from 'ioredis';
import { z } from 'zod';
import {
  type ChannelScope,
  type ChannelStateResult,
  type Platform,
  presets,
  quotaUserId,
  systemOrigin,
} from '../../shared/jobs.js';
import type { JobClient } from './job-client.js';
import type { SafetyMode } from './view.js';

export const workspaceSettingsSchema = z.strictObject({
  preset: z.enum(presets).optional(),
  safetyMode: z.enum(['off', 'spoiler', 'block']).optional(),
  /** Age-restricted (NSFW) channels may show flagged images, as spoilers. @defaultValue false */
  allowFlaggedInAgeRestricted: z.boolean().optional(),
});
export type WorkspaceSettings = z.infer<typeof workspaceSettingsSchema>;

export interface SettingsStoreOptions {
  connection: Redis;
  prefix: string;
  /** Runs the channel-state jobs (no quota: admins' clicks and indexing are not a person's jobs). */
  jobs: JobClient;
  /** The deployment's safety mode (SAFETY_MODE), used where a workspace sets none. */
  defaultSafetyMode: SafetyMode;
  /** @defaultValue 30000 */
  timeoutMs?: number;
}

export class SettingsStore {
  readonly #connection: Redis;
  readonly #prefix: string;
  readonly #jobs: JobClient;
  readonly #timeoutMs: number;
  readonly defaultSafetyMode: SafetyMode;

  constructor(options: SettingsStoreOptions) {
    this.#connection = options.connection;
    this.#prefix = options.prefix;
    this.#jobs = options.jobs;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.defaultSafetyMode = options.defaultSafetyMode;
  }

  #key(platform: Platform, workspace: string): string {
    return `${this.#prefix}:bot:settings:${platform}:${workspace}`;
  }

  async workspace(platform: Platform, workspace: string | undefined): Promise<WorkspaceSettings> {
    if (workspace === undefined) return {};
    const raw = await this.#connection.get(this.#key(platform, workspace));
    if (raw === null) return {};
    const parsed = workspaceSettingsSchema.safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data : {};
  }

  /** Merges a patch into a workspace's settings; `undefined` values clear a setting. */
  async updateWorkspace(
    platform: Platform,
    workspace: string,
    patch: { [K in keyof WorkspaceSettings]?: WorkspaceSettings[K] | undefined },
  ): Promise<WorkspaceSettings> {
    const current = await this.workspace(platform, workspace);
    const next: Record<string, unknown> = { ...current };
    for (const [k, v] of Object.entries(patch)) {
      if (v === undefined) delete next[k];
      else next[k] = v;
    }
    const checked = workspaceSettingsSchema.parse(next);
    await this.#connection.set(this.#key(platform, workspace), JSON.stringify(checked));
    return checked;
  }

  /** The safety mode in force in a workspace. */
  async safetyMode(platform: Platform, workspace: string | undefined): Promise<SafetyMode> {
    return (await this.workspace(platform, workspace)).safetyMode ?? this.defaultSafetyMode;
  }

  async channel(scope: ChannelScope): Promise<ChannelStateResult> {
    return this.#channelState(scope);
  }

  async setChannel(
    scope: ChannelScope,
    set: { indexing?: boolean; backfillCursor?: string | null; backfillDone?: boolean },
  ): Promise<ChannelStateResult> {
    return this.#channelState(scope, set);
  }

  async #channelState(
    scope: ChannelScope,
    set?: { indexing?: boolean; backfillCursor?: string | null; backfillDone?: boolean },
  ): Promise<ChannelStateResult> {
    const origin = systemOrigin(scope);
    return this.#jobs.run(
      'channel-state',
      { ...scope, ...(set === undefined ? {} : { set }), origin },
      { userId: quotaUserId(origin), timeoutMs: this.#timeoutMs },
    );
  }
}
