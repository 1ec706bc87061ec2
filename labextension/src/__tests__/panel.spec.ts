import { CommandRegistry } from '@lumino/commands';
import { Widget } from '@lumino/widgets';

import { CommandIDs } from '../commands';
import { JobsModel } from '../model';
import { JobsPanel, RENDER_INTERVAL } from '../panel';
import { FakeApi, HELD_ACTIONS, makeJob, waitFor, rendered } from './fakes';

const EVIL = '<img src=x onerror="window.__pwned = 1">';

async function setup(api: FakeApi, pageSize = 100) {
  const model = new JobsModel({
    client: api.asClient(),
    pageSize,
    fetchDelay: 10_000
  });
  const commands = new CommandRegistry();
  const executed: string[] = [];
  for (const id of [
    CommandIDs.show,
    CommandIDs.cancel,
    CommandIDs.retry,
    CommandIDs.release,
    CommandIDs.remove,
    CommandIDs.openNotebook,
    CommandIDs.clearFinished
  ]) {
    commands.addCommand(id, {
      execute: args => void executed.push(`${id} ${JSON.stringify(args)}`)
    });
  }
  await model.load();
  const panel = new JobsPanel({ model, commands, serverRoot: '/home/ana' });
  Widget.attach(panel, document.body);
  const render = () => rendered(panel);
  await render();
  const rows = () => [
    ...panel.node.querySelectorAll<HTMLElement>('.jp-JobsPanel-row')
  ];
  await waitFor(() => rows().length > 0);
  return { model, panel, executed, rows, render };
}

afterEach(() => {
  document.body.innerHTML = '';
});

describe('JobsPanel', () => {
  it('shows name, owner, status and progress of each job, newest first', async () => {
    const api = new FakeApi();
    api.add(
      makeJob(1, {
        name: 'load data',
        status: 'succeeded',
        owner: '/home/ana/work/etl.ipynb'
      }),
      makeJob(2, {
        name: 'train',
        status: 'running',
        started_at: 1,
        progress: { done: 3, total: 4, message: 'epoch 3' }
      }),
      makeJob(3, {
        name: 'plot',
        status: 'failed',
        reason: 'error',
        owner: 'kernel:abc'
      })
    );
    const { rows } = await setup(api);
    expect(rows().map(row => row.dataset.jobId)).toEqual(['3', '2', '1']);
    const [plot, train, load] = rows();
    expect(plot.querySelector('.jp-JobsPanel-status')!.textContent).toBe(
      'failed (error)'
    );
    expect(plot.querySelector('.jp-JobsPanel-owner')!.textContent).toBe(
      'kernel:abc'
    );
    expect(
      train.querySelector('[role=progressbar]')!.getAttribute('aria-valuenow')
    ).toBe('75');
    expect(
      train.querySelector('.jp-JobsPanel-progress-label')!.textContent
    ).toBe('75% (3/4) · epoch 3');
    expect(load.querySelector('button.jp-JobsPanel-owner')!.textContent).toBe(
      'etl.ipynb'
    );
  });

  it('offers to clear finished jobs only while there are some', async () => {
    const api = new FakeApi();
    api.add(makeJob(1, { status: 'running', started_at: 1 }));
    const { panel, model, executed, render } = await setup(api);
    const clear = () =>
      panel.node.querySelector<HTMLButtonElement>('.jp-JobsPanel-clear')!;
    expect(clear().disabled).toBe(true);
    api.add(makeJob(2, { status: 'failed', reason: 'error' }));
    await model.refresh();
    await render();
    await waitFor(() => !clear().disabled);
    clear().click();
    expect(executed).toEqual([`${CommandIDs.clearFinished} {}`]);
  });

  it('renders job names as text, never as HTML', async () => {
    const api = new FakeApi();
    api.add(makeJob(1, { name: EVIL, owner: EVIL }));
    const { panel, rows } = await setup(api);
    expect(rows()[0].querySelector('.jp-JobsPanel-name')!.textContent).toBe(
      EVIL
    );
    expect(panel.node.querySelector('img')).toBeNull();
    expect((window as any).__pwned).toBeUndefined();
  });

  it('acts through the commands: open, cancel, retry, delete, notebook', async () => {
    const api = new FakeApi();
    api.add(
      makeJob(1, { status: 'failed', owner: '/home/ana/a.ipynb' }),
      makeJob(2, { status: 'running' })
    );
    const { rows, executed } = await setup(api);
    const [running, failed] = rows();
    running
      .querySelector<HTMLButtonElement>('[aria-label="Cancel job 2"]')!
      .click();
    expect(running.querySelector('[aria-label="Delete job 2"]')).toBeNull();
    failed
      .querySelector<HTMLButtonElement>('[aria-label="Retry job 1"]')!
      .click();
    failed
      .querySelector<HTMLButtonElement>('[aria-label="Delete job 1"]')!
      .click();
    failed
      .querySelector<HTMLButtonElement>('button.jp-JobsPanel-owner')!
      .click();
    running.click();
    expect(executed).toEqual([
      'jupyter-jobs:cancel {"id":2}',
      'jupyter-jobs:retry {"id":1}',
      'jupyter-jobs:delete {"id":1}',
      'jupyter-jobs:open-notebook {"path":"a.ipynb"}',
      'jupyter-jobs:show {"id":2}'
    ]);
  });

  it('offers Release for a held job, through the release command', async () => {
    const api = new FakeApi();
    api.add(
      makeJob(1, { status: 'pending', held: true, actions: HELD_ACTIONS }),
      makeJob(2, { status: 'pending' })
    );
    const { rows, executed } = await setup(api);
    const [plain, held] = rows();
    expect(plain.querySelector('[aria-label="Release job 2"]')).toBeNull();
    held
      .querySelector<HTMLButtonElement>('[aria-label="Release job 1"]')!
      .click();
    expect(executed).toEqual(['jupyter-jobs:release {"id":1}']);
  });

  it("offers exactly the job's actions: delete a queued job, nothing while one stops", async () => {
    const api = new FakeApi();
    api.add(
      makeJob(1, { status: 'queued' }),
      makeJob(2, { status: 'running', cancel_requested: true, actions: [] })
    );
    const { rows } = await setup(api);
    const [stopping, queued] = rows();
    const labels = (row: Element) =>
      [...row.querySelectorAll('.jp-JobsPanel-actions button')].map(b =>
        b.getAttribute('aria-label')
      );
    expect(labels(queued)).toEqual(['Cancel job 1', 'Delete job 1']);
    expect(labels(stopping)).toEqual([]);
    expect(stopping.textContent).toContain('running (cancelling)');
  });

  it('filters by status from the chips, with counts', async () => {
    const api = new FakeApi();
    api.add(makeJob(1, { status: 'failed' }), makeJob(2), makeJob(3));
    const { panel, model, rows, render } = await setup(api);
    const chip = panel.node.querySelector<HTMLButtonElement>(
      '.jp-JobsPanel-chip[data-status=failed]'
    )!;
    expect(chip.textContent).toBe('failed1');
    expect(chip.getAttribute('aria-label')).toBe('failed: 1');
    chip.click();
    await waitFor(() => model.jobs.length === 1);
    await render();
    await waitFor(() => rows().length === 1);
    expect(model.filter.statuses).toEqual(['failed']);
    expect(chip.getAttribute('aria-pressed')).toBe('true');
  });

  it('keeps the DOM small with 10,000 jobs loaded', async () => {
    const api = new FakeApi();
    for (let id = 1; id <= 10_000; id++) {
      api.add(makeJob(id));
    }
    const { model, rows, render } = await setup(api, 2_000);
    while (model.hasMore) {
      await model.loadMore();
    }
    await render();
    expect(model.jobs.length).toBe(10_000);
    expect(rows().length).toBeLessThan(60);
    expect(rows()[0].dataset.jobId).toBe('10000');
  });
});

describe('JobsPanel rendering', () => {
  it('renders a burst of changes a few times a second, the last one included', async () => {
    const api = new FakeApi();
    api.add(makeJob(1));
    const { model, panel, rows } = await setup(api);
    let renders = 0;
    const original = panel.processMessage.bind(panel);
    panel.processMessage = msg => {
      if (msg.type === 'update-request') {
        renders++;
      }
      original(msg);
    };
    const started = Date.now();
    for (let id = 2; id <= 200; id++) {
      api.add(makeJob(id));
      model.applyEvent(api.move(id, 'running'));
      await new Promise(resolve => setTimeout(resolve, 1));
    }
    const elapsed = Date.now() - started;
    await waitFor(() => rows()[0]?.dataset.jobId === '200');
    // At most one render per RENDER_INTERVAL (and one at the start), not one per change.
    expect(renders).toBeLessThanOrEqual(
      Math.ceil(elapsed / RENDER_INTERVAL) + 2
    );
    expect(renders).toBeGreaterThan(0);
  });
});

describe('JobsPanel: whose jobs', () => {
  const whose = (panel: JobsPanel) =>
    [
      ...panel.node.querySelectorAll<HTMLButtonElement>(
        '.jp-JobsPanel-whose button'
      )
    ].map(button => ({
      text: button.textContent,
      pressed: button.getAttribute('aria-pressed'),
      disabled: button.disabled
    }));

  it("toggles between everyone's jobs and the user's own, naming other users", async () => {
    const api = new FakeApi();
    api.add(
      makeJob(1, { name: 'mine' }),
      makeJob(2, { name: 'theirs', user: 'bob', user_display_name: 'Bob B.' })
    );
    const { panel, rows, render } = await setup(api);
    expect(whose(panel)).toEqual([
      { text: 'Mine', pressed: 'false', disabled: false },
      { text: 'Everyone', pressed: 'true', disabled: false }
    ]);
    const [theirs, mine] = rows();
    expect(theirs.querySelector('.jp-JobsPanel-user')!.textContent).toBe(
      'Bob B.'
    );
    expect(mine.querySelector('.jp-JobsPanel-user')).toBeNull();
    panel.node
      .querySelector<HTMLButtonElement>('.jp-JobsPanel-whose button')!
      .click();
    await waitFor(() => rows().length === 1);
    await render();
    expect(rows()[0].dataset.jobId).toBe('1');
    expect(whose(panel)[0].pressed).toBe('true');
  });

  it("offers no action on another user's job to a user who may not act on it", async () => {
    const api = new FakeApi();
    api.me_ = { ...api.me_, can_write_all: false };
    api.add(makeJob(1, { status: 'failed' }), makeJob(2, { user: 'bob' }));
    const { rows } = await setup(api);
    const labels = (row: Element) =>
      [...row.querySelectorAll('.jp-JobsPanel-actions button')].map(b =>
        b.getAttribute('aria-label')
      );
    const [theirs, mine] = rows();
    expect(labels(theirs)).toEqual([]);
    expect(labels(mine)).toEqual(['Retry job 1', 'Delete job 1']);
  });

  it('switches Everyone off for a user the server shows only their own jobs', async () => {
    const api = new FakeApi();
    api.me_ = { ...api.me_, can_read_all: false };
    api.add(makeJob(1), makeJob(2, { user: 'bob' }));
    const { panel, rows } = await setup(api);
    expect(rows().map(row => row.dataset.jobId)).toEqual(['1']);
    expect(whose(panel)).toEqual([
      { text: 'Mine', pressed: 'true', disabled: false },
      { text: 'Everyone', pressed: 'false', disabled: true }
    ]);
  });
});

describe('JobsPanel: job types', () => {
  it('offers the job types beside the search and lists one type', async () => {
    const api = new FakeApi();
    api.typeNames = ['explain', 'train'];
    api.add(
      makeJob(1, { kind: 'typed', type: 'train' }),
      makeJob(2),
      makeJob(3, { kind: 'typed', type: 'explain' })
    );
    const { panel, model, rows, render } = await setup(api);
    const found = () =>
      panel.node.querySelector<HTMLSelectElement>('.jp-JobsPanel-type');
    await waitFor(() => found() !== null); // once the types are read
    const select = found()!;
    expect([...select.options].map(option => option.value)).toEqual([
      '',
      'explain',
      'train'
    ]);
    select.value = 'train';
    select.dispatchEvent(new Event('change', { bubbles: true }));
    await waitFor(() => model.jobs.length === 1);
    await render();
    await waitFor(() => rows().length === 1);
    expect(model.filter.type).toBe('train');
    expect(rows()[0].textContent).toContain('job-1');
  });

  it('shows no type filter where the server knows no job type', async () => {
    const api = new FakeApi();
    api.add(makeJob(1));
    const { panel, render } = await setup(api);
    await render();
    expect(panel.node.querySelector('.jp-JobsPanel-type')).toBeNull();
    expect(panel.node.querySelector('.jp-JobsPanel-search')).not.toBeNull();
  });
});
