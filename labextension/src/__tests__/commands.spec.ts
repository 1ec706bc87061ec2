import { CommandRegistry } from '@lumino/commands';

import { CommandIDs, registerCommands } from '../commands';
import { JobsModel } from '../model';
import { FakeApi, HELD_ACTIONS, makeJob } from './fakes';

describe('commands', () => {
  it('are enabled for a job only when its actions include theirs', async () => {
    const api = new FakeApi();
    api.add(
      makeJob(1, { status: 'running' }),
      makeJob(2, { status: 'failed' }),
      makeJob(3, { status: 'running', cancel_requested: true, actions: [] })
    );
    const model = new JobsModel({ client: api.asClient(), fetchDelay: 10_000 });
    await model.load();
    const commands = new CommandRegistry();
    registerCommands({
      commands,
      model,
      openPanel: () => undefined,
      openDetail: async () => undefined
    });
    const enabled = (id: number) =>
      [CommandIDs.cancel, CommandIDs.retry, CommandIDs.remove].filter(c =>
        commands.isEnabled(c, { id })
      );
    expect(enabled(1)).toEqual([CommandIDs.cancel]);
    expect(enabled(2)).toEqual([CommandIDs.retry, CommandIDs.remove]);
    expect(enabled(3)).toEqual([]);
    // A job the model does not hold is left to the server to judge.
    expect(enabled(99)).toEqual([
      CommandIDs.cancel,
      CommandIDs.retry,
      CommandIDs.remove
    ]);
  });

  it('release a held job and put what the server returned in the list', async () => {
    const api = new FakeApi();
    api.add(
      makeJob(1, { status: 'pending', held: true, actions: HELD_ACTIONS }),
      makeJob(2, { status: 'failed' })
    );
    const model = new JobsModel({ client: api.asClient(), fetchDelay: 10_000 });
    await model.load();
    const commands = new CommandRegistry();
    registerCommands({
      commands,
      model,
      openPanel: () => undefined,
      openDetail: async () => undefined
    });
    expect(commands.isEnabled(CommandIDs.release, { id: 1 })).toBe(true);
    expect(commands.isEnabled(CommandIDs.release, { id: 2 })).toBe(false);
    await commands.execute(CommandIDs.release, { id: 1 });
    expect(api.calls).toContain('release 1');
    const released = model.get(1)!;
    expect([released.status, released.held]).toEqual(['queued', false]);
    expect(released.actions).toEqual(['cancel', 'delete']);
    expect(commands.isEnabled(CommandIDs.release, { id: 1 })).toBe(false);
  });
});
