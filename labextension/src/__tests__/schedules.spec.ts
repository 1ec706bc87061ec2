import { Notification } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import type { INotebookAwareJob } from '../nbtypes';
import { ScheduleAlerts, SchedulesView } from '../schedules';
import { EVENT_SCHEMA_ID } from '../types';
import {
  FakeApi,
  FakeEvents,
  makeEvent,
  makeJob,
  makeSchedule,
  rendered,
  waitFor
} from './fakes';

function scheduledRun(
  id: number,
  scheduleId: number,
  fields: Partial<INotebookAwareJob> = {}
): INotebookAwareJob {
  return {
    ...makeJob(id, {
      kind: 'notebook' as INotebookAwareJob['kind'],
      status: 'succeeded',
      started_at: 1_700_000_100,
      finished_at: 1_700_000_112
    }),
    schedule_id: scheduleId,
    scheduled_time: 1_700_000_000,
    ...fields
  };
}

let events: FakeEvents;

beforeEach(() => {
  events = new FakeEvents();
});

async function mount(api: FakeApi) {
  const opened: string[] = [];
  const view = new SchedulesView({
    client: api.asClient(),
    events: events.asManager(),
    edit: schedule => void opened.push(`edit ${schedule.id}`),
    openJob: id => void opened.push(`job ${id}`),
    openResult: id => void opened.push(`result ${id}`),
    runNotebook: () => void opened.push('run'),
    newSchedule: () => void opened.push('new')
  });
  Widget.attach(view, document.body);
  await view.refresh();
  const render = () => rendered(view);
  await render();
  const items = () => [
    ...view.node.querySelectorAll<HTMLElement>('.jp-JobsSchedules-item')
  ];
  const button = (item: HTMLElement, name: string) =>
    item.querySelector<HTMLButtonElement>(`.jp-JobsSchedules-${name}`)!;
  return { view, opened, render, items, button };
}

afterEach(() => {
  events.dispose();
  document.body.innerHTML = '';
  Notification.dismiss();
});

describe('SchedulesView', () => {
  it('lists each schedule with its target, next run and last status', async () => {
    const api = new FakeApi();
    api.schedulesById.set(
      1,
      makeSchedule(1, {
        name: 'morning report',
        cron: '0 8 * * 1-5',
        every: null,
        timezone: 'Europe/Paris',
        target: { kind: 'notebook', path: 'work/report.ipynb' }
      })
    );
    api.schedulesById.set(2, {
      ...makeSchedule(2, {
        name: 'poll',
        every: 600,
        target: { kind: 'typed', type: 'train', parameters: { epochs: 2 } }
      }),
      last_run: {
        job_id: 9,
        status: 'failed',
        scheduled_time: 1_700_000_000,
        finished_at: 1_700_000_010
      }
    });
    api.schedulesById.set(
      3,
      makeSchedule(3, { target: { kind: 'function', parameters: {} } })
    );
    const { items, view, opened, button } = await mount(api);
    const [first, second, third] = items();
    expect(items()).toHaveLength(3);
    expect(first.textContent).toContain('morning report');
    expect(first.textContent).toContain('work/report.ipynb');
    expect(first.textContent).toContain('0 8 * * 1-5 (Europe/Paris)');
    expect(first.querySelector('.jp-JobsSchedules-next')!.textContent).toMatch(
      /^Next: /
    );
    expect(first.querySelector('.jp-JobsSchedules-last')).toBeNull();
    expect(second.textContent).toContain('job type train');
    // The dialog edits notebook and typed schedules; a function's is Python's to change
    expect(third.textContent).toContain('a function');
    expect(third.querySelector('.jp-JobsSchedules-edit')).toBeNull();
    button(second, 'edit').click();
    button(first, 'edit').click();
    view.node
      .querySelector<HTMLButtonElement>('.jp-JobsSchedules-new')!
      .click();
    expect(opened).toEqual(['edit 2', 'edit 1', 'new']);
    const last = second.querySelector<HTMLElement>('.jp-JobsSchedules-last')!;
    expect(last.dataset.status).toBe('failed');
    expect(last.textContent).toBe('Last: failed');
  });

  it('pauses, resumes and deletes through the API', async () => {
    const api = new FakeApi();
    api.schedulesById.set(1, makeSchedule(1));
    api.schedulesById.set(2, makeSchedule(2));
    const { items, button, render } = await mount(api);
    button(items()[0], 'pause').click();
    await waitFor(() => api.schedulesById.get(1)!.paused === true);
    await waitFor(() => api.calls.filter(c => c === 'schedules').length >= 2);
    await render();
    expect(
      items()[0].querySelector('.jp-JobsSchedules-next')!.textContent
    ).toBe('Paused');
    expect(button(items()[0], 'pause').textContent).toBe('Resume');
    button(items()[0], 'pause').click();
    await waitFor(() => api.schedulesById.get(1)!.paused === false);

    button(items()[1], 'delete').click();
    await waitFor(() => !api.schedulesById.has(2));
    await waitFor(() => items().length === 1);
    expect(items()[0].dataset.scheduleId).toBe('1');
    expect(api.calls).toEqual(
      expect.arrayContaining([
        'pauseSchedule 1',
        'resumeSchedule 1',
        'deleteSchedule 2'
      ])
    );
  });

  it('shows the run history of a schedule, with links to each output notebook', async () => {
    const api = new FakeApi();
    api.schedulesById.set(3, makeSchedule(3));
    api.add(
      scheduledRun(5, 3),
      scheduledRun(6, 3, { status: 'failed' }),
      makeJob(7, { status: 'succeeded' }),
      scheduledRun(8, 4)
    );
    const { view, items, button, render, opened } = await mount(api);
    button(items()[0], 'history').click();
    await waitFor(() => (view.history.get(3) ?? []).length > 0);
    await render();
    const rows = [
      ...items()[0].querySelectorAll<HTMLElement>('.jp-JobsSchedules-runs tr')
    ];
    expect(rows.map(row => row.dataset.jobId)).toEqual(['6', '5']);
    expect(rows[0].textContent).toContain('failed');
    expect(rows[1].textContent).toContain('12s');
    rows[1]
      .querySelector<HTMLButtonElement>('.jp-JobsSchedules-result')!
      .click();
    expect(opened).toEqual(['result 5']);
    expect(api.calls).toContain('list {"schedule":3,"limit":20}');
  });

  it('reads the schedules again when a scheduled run has news', async () => {
    const api = new FakeApi();
    const { items } = await mount(api);
    expect(items()).toHaveLength(0);
    api.schedulesById.set(1, makeSchedule(1));
    events.stream.emit({
      schema_id: EVENT_SCHEMA_ID,
      jobs: [makeEvent(7, { action: 'created', schedule_id: 1 })]
    });
    await waitFor(() => items().length === 1);
  });
});

describe('ScheduleAlerts', () => {
  it('raises an error notification for a failed scheduled run, once', async () => {
    const shown: number[] = [];
    let schedulesShown = 0;
    const alerts = new ScheduleAlerts({
      events: events.asManager(),
      showJob: id => void shown.push(id),
      showSchedules: () => void schedulesShown++
    });
    // Each entry in a batch event of its own, as the server's windows send them.
    const emit = (entry: object) =>
      events.stream.emit({ schema_id: EVENT_SCHEMA_ID, jobs: [entry] });
    // A failed job outside any schedule, and a scheduled run that succeeded: no alert here.
    emit(makeEvent(1, { status: 'failed' }));
    emit({ ...makeEvent(2, { status: 'succeeded' }), schedule_id: 4 });
    emit({
      ...makeEvent(3, { status: 'failed', name: 'nightly' }),
      schedule_id: 4
    });
    emit({
      ...makeEvent(3, { status: 'failed', name: 'nightly' }),
      schedule_id: 4
    });
    const notes = Notification.manager.notifications;
    expect(notes.map(n => [n.type, n.message])).toEqual([
      ['error', 'Scheduled run 3 “nightly” failed']
    ]);
    expect(notes[0].options.autoClose).toBe(false);
    notes[0].options.actions![0].callback(new MouseEvent('click'));
    notes[0].options.actions![1].callback(new MouseEvent('click'));
    expect(shown).toEqual([3]);
    expect(schedulesShown).toBe(1);
    // The runs it heard of, for the job notifier to leave out.
    expect([1, 2, 3].map(id => alerts.isScheduledRun(id))).toEqual([
      false,
      true,
      true
    ]);
    // Switched off by the notifications setting: remembered, not announced.
    alerts.enabled = false;
    emit({ ...makeEvent(6, { status: 'failed' }), schedule_id: 4 });
    expect(alerts.isScheduledRun(6)).toBe(true);
    expect(Notification.manager.notifications).toHaveLength(1);
    alerts.enabled = true;
    alerts.dispose();
    emit({ ...makeEvent(5, { status: 'failed' }), schedule_id: 4 });
    expect(Notification.manager.notifications).toHaveLength(1);
  });
});
