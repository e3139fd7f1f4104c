// The App Home tab: a person's running and recent jobs with their state (read from the jobs
// themselves), what their quota still allows, and for workspace admins the workspace settings
// (default preset, safety mode), saved through the core's SettingsStore.
import type { App, BlockAction, StaticSelectAction } from '@slack/bolt';
import { ForbiddenError } from '../../shared/errors.js';
import { type Preset, presets, quotaUserId } from '../../shared/jobs.js';
import type { JobRef } from '../core/job-status.js';
import { renderError } from '../core/render.js';
import type { SafetyMode } from '../core/view.js';
import { viewOf } from '../core/view.js';
import { HOME_PRESET_ACTION, HOME_SAFETY_ACTION, type HomeJob, homeView, quotaLine } from './blocks.js';
import { ackThenWait, type SlackContext } from './context.js';
import { permalinkFor } from './permalinks.js';

async function describeJob(
  ctx: SlackContext,
  jobId: JobRef,
  reply: Record<string, unknown>,
): Promise<HomeJob | undefined> {
  const [data, status] = await Promise.all([
    ctx.services.jobs.data(jobId),
    ctx.services.jobs.status(jobId).catch(() => undefined),
  ]);
  const prompt = (data as { prompt?: unknown } | undefined)?.prompt;
  if (typeof prompt !== 'string' || status === undefined) return undefined;
  const { channel, ts } = reply;
  return {
    jobId,
    prompt,
    status: viewOf(jobId, status).text,
    ...(typeof channel === 'string' && typeof ts === 'string'
      ? { link: permalinkFor(ctx.identity.url, { channel, ts }) }
      : {}),
  };
}

/** Draws and publishes a person's home tab. */
export async function publishHome(
  ctx: SlackContext,
  team: string,
  user: string,
  notice?: string,
): Promise<void> {
  const { services } = ctx;
  const inflight = await ctx.core.runner.inflightOf('slack', user, team);
  const running = (await Promise.all(inflight.map((e) => describeJob(ctx, e.jobId, e.reply)))).filter(
    (j): j is HomeJob => j !== undefined,
  );
  const runningIds = new Set(inflight.map((e) => e.jobId));
  const recent = (
    await Promise.all(
      (
        await ctx.recent.list('slack', team, user, 10)
      )
        .filter((r) => !runningIds.has(r.jobId))
        .map((r) => describeJob(ctx, r.jobId, r.reply)),
    )
  ).filter((j): j is HomeJob => j !== undefined);
  const usage = await services.quota
    .usage(quotaUserId({ platform: 'slack', workspace: team, user }), 'imagine')
    .catch(() => undefined);
  const quota = usage === undefined ? undefined : quotaLine(services.quota.limits('imagine'), usage);
  const admin = await ctx.isAdmin(user);
  const settings = admin ? await services.settings.workspace('slack', team) : undefined;
  const view = homeView({
    running,
    recent,
    quota,
    notice,
    settings: settings && {
      preset: settings.preset,
      safetyMode: settings.safetyMode ?? services.settings.defaultSafetyMode,
      defaultSafetyMode: services.settings.defaultSafetyMode,
      presets,
    },
  });
  await ctx.client.views.publish({ user_id: user, view });
}

export function registerHome(app: App, ctx: SlackContext): void {
  app.event('app_home_opened', async ({ event, body }) => {
    if (event.tab !== 'home') return;
    const team = (body as { team_id?: string }).team_id ?? ctx.identity.teamId;
    ctx.background('publish the home tab', () => publishHome(ctx, team, event.user));
  });

  const onSetting =
    (apply: (team: string, value: string) => Promise<unknown>) =>
    async ({
      ack,
      body,
      action,
    }: {
      ack: () => Promise<void>;
      body: BlockAction;
      action: StaticSelectAction;
    }) => {
      await ackThenWait(ctx, ack);
      const team = body.team?.id ?? ctx.identity.teamId;
      const user = body.user.id;
      ctx.background('save a setting', async () => {
        let notice: string;
        if (!(await ctx.isAdmin(user))) notice = renderError(new ForbiddenError('admin_only'));
        else {
          try {
            await apply(team, action.selected_option.value);
            notice = 'Saved.';
          } catch (error) {
            ctx.logger.warn({ err: error }, 'could not save a workspace setting');
            notice = 'That setting could not be saved. Please try again.';
          }
        }
        await publishHome(ctx, team, user, notice);
      });
    };

  app.action<BlockAction<StaticSelectAction>>(
    HOME_PRESET_ACTION,
    onSetting(async (team, value) => {
      const preset = (presets as readonly string[]).includes(value) ? (value as Preset) : undefined;
      await ctx.services.settings.updateWorkspace('slack', team, { preset });
    }),
  );
  app.action<BlockAction<StaticSelectAction>>(
    HOME_SAFETY_ACTION,
    onSetting(async (team, value) => {
      await ctx.services.settings.updateWorkspace('slack', team, { safetyMode: value as SafetyMode });
    }),
  );
}
