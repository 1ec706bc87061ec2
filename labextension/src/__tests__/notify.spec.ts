import { Notification } from '@jupyterlab/apputils';

import { JobsModel } from '../model';
import { JobNotifier } from '../notify';
import { FakeApi, makeJob } from './fakes';

async function setup(n: number, announcedElsewhere?: (id: number) => boolean) {
  const api = new FakeApi();
  for (let id = 1; id <= n; id++) {
    api.add(makeJob(id, { status: 'running' }));
  }
  const model = new JobsModel({ client: api.asClient(), fetchDelay: 10_000 });
  await model.load();
  const shown: number[] = [];
  let panelOpened = 0;
  const notifier = new JobNotifier({
    model,
    showJob: id => shown.push(id),
    showAll: () => panelOpened++,
    window: 5,
    announcedElsewhere
  });
  const settle = () => new Promise(resolve => setTimeout(resolve, 30));
  return { api, model, notifier, shown, settle, panel: () => panelOpened };
}

afterEach(() => {
  Notification.dismiss();
});

describe('JobNotifier', () => {
  it('says when a job finishes or fails, with a button that opens it', async () => {
    const { api, model, shown, settle } = await setup(3);
    model.applyEvent(api.move(1, 'succeeded'));
    model.applyEvent(api.move(2, 'failed', { reason: 'error' }));
    model.applyEvent(api.move(3, 'queued')); // an automatic retry: no news
    await settle();
    const notes = Notification.manager.notifications;
    expect(notes.map(n => [n.type, n.message]).sort()).toEqual([
      ['error', 'Job 2 “job-2” failed (error)'],
      ['success', 'Job 1 “job-1” finished']
    ]);
    const failed = notes.find(n => n.type === 'error')!;
    expect(failed.options.autoClose).toBe(false);
    failed.options.actions![0].callback(new MouseEvent('click'));
    expect(shown).toEqual([2]);
  });

  it('sums up a burst of finished jobs in one notification', async () => {
    const { api, model, settle, panel } = await setup(10);
    for (let id = 1; id <= 10; id++) {
      model.applyEvent(api.move(id, id <= 2 ? 'failed' : 'succeeded'));
    }
    await settle();
    const notes = Notification.manager.notifications;
    expect(notes).toHaveLength(1);
    expect(notes[0].message).toBe('10 jobs finished, 2 failed');
    notes[0].options.actions![0].callback(new MouseEvent('click'));
    expect(panel()).toBe(1);
  });

  it('stays quiet when switched off', async () => {
    const { api, model, notifier, settle } = await setup(1);
    notifier.enabled = false;
    model.applyEvent(api.move(1, 'failed'));
    await settle();
    expect(Notification.manager.count).toBe(0);
  });

  it('announces a job that ended just before it was switched on', async () => {
    const { api, model, notifier, settle } = await setup(1);
    notifier.enabled = false;
    model.applyEvent(api.move(1, 'failed'));
    notifier.enabled = true;
    await settle();
    expect(Notification.manager.count).toBe(1);
  });

  it('leaves out the jobs announced elsewhere (scheduled runs)', async () => {
    const { api, model, settle } = await setup(3, id => id !== 3);
    model.applyEvent(api.move(1, 'succeeded'));
    model.applyEvent(api.move(2, 'failed'));
    model.applyEvent(api.move(3, 'failed'));
    await settle();
    expect(Notification.manager.notifications.map(n => n.message)).toEqual([
      'Job 3 “job-3” failed'
    ]);
  });
});

describe('JobNotifier on a shared server', () => {
  it("announces the user's own jobs only", async () => {
    const { api, model, settle } = await setup(0);
    api.add(
      makeJob(1, { status: 'running' }),
      makeJob(2, { status: 'running', user: 'bob' })
    );
    await model.load();
    model.applyEvent(api.move(1, 'succeeded'));
    model.applyEvent(api.move(2, 'failed', { reason: 'error' }));
    await settle();
    expect(Notification.manager.notifications.map(n => n.message)).toEqual([
      'Job 1 “job-1” finished'
    ]);
  });
});
