// The /imagine command offers the drawer and the candidate count, with the job schema's limits, so
// Discord's client refuses a bad value before the bot sees it.
import { describe, expect, it } from 'vitest';
import { commandDefinitions } from '../../../src/bots/discord/commands.js';

describe('/imagine drawer options', () => {
  it('has a drawer choice and a candidates count of 1 to 16', () => {
    const imagine = commandDefinitions().find((c) => c.name === 'imagine') as {
      options: { name: string; choices?: { value: string }[]; min_value?: number; max_value?: number }[];
    };
    const drawer = imagine.options.find((o) => o.name === 'drawer');
    expect(drawer?.choices?.map((c) => c.value)).toEqual(['vqgan-clip', 'dalle']);
    const candidates = imagine.options.find((o) => o.name === 'candidates');
    expect(candidates).toMatchObject({ min_value: 1, max_value: 16 });
  });
});
