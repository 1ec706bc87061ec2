import { CommandRegistry } from '@lumino/commands';

import { CommandIDs, registerCommands } from '../commands';
import { JobsModel } from '../model';
import { FakeApi, makeJob } from './fakes';

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
});
