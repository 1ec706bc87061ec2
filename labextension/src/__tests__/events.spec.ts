import { LiveUpdates, parseJobEvents } from '../events';
import { JobsModel } from '../model';
import { EVENT_SCHEMA_ID, IJobEvent } from '../types';
import { FakeApi, FakeEvents, makeJob, waitFor } from './fakes';

describe('parseJobEvents', () => {
  it('reads the entries of our schema and ignores others', () => {
    expect(
      parseJobEvents({
        schema_id:
          'https://events.jupyter.org/jupyter_server/contents_service/v1',
        action: 'save'
      })
    ).toBeNull();
    expect(
      parseJobEvents({
        schema_id: EVENT_SCHEMA_ID,
        jobs: [
          {
            action: 'transition',
            id: 7,
            name: 'fit',
            owner: 'a.ipynb',
            user: 'ana',
            status: 'failed',
            previous: 'running',
            reason: 'error',
            attempt: 2,
            progress: null,
            actions: ['retry', 'delete', 'fly'],
            schedule_id: 3,
            type: 'train',
            summary: { accuracy: 0.75 }
          },
          {
            action: 'created',
            id: 8,
            name: 'plot',
            owner: '',
            status: 'succeeded',
            previous: null,
            reason: null,
            attempt: 1,
            progress: { done: 1, total: 1, message: null },
            actions: ['delete']
          }
        ]
      })
    ).toEqual([
      {
        action: 'transition',
        id: 7,
        name: 'fit',
        owner: 'a.ipynb',
        user: 'ana',
        status: 'failed',
        previous: 'running',
        reason: 'error',
        attempt: 2,
        progress: null,
        actions: ['retry', 'delete'], // an action this version does not know is left out
        schedule_id: 3,
        type: 'train',
        summary: { accuracy: 0.75 }
      },
      {
        action: 'created',
        id: 8,
        name: 'plot',
        owner: '',
        user: '', // a version 2 entry has none: a job of no user
        status: 'succeeded',
        previous: null,
        reason: null,
        attempt: 1,
        progress: { done: 1, total: 1, message: null },
        actions: ['delete'],
        schedule_id: null,
        type: null, // a version 3 entry has none: an untyped job
        summary: null
      }
    ]);
  });

  it('reports a malformed entry instead of applying it, and keeps the others', () => {
    const warn = jest
      .spyOn(console, 'warn')
      .mockImplementation(() => undefined);
    const good = { action: 'created', id: 9, status: 'queued' };
    expect(
      parseJobEvents({
        schema_id: EVENT_SCHEMA_ID,
        jobs: [
          { action: 'transition', id: '7', status: 'failed' },
          { action: 'exploded', id: 7, status: 'failed' },
          { action: 'created', id: 7, status: 'weird' },
          null,
          good
        ]
      })!.map(event => event.id)
    ).toEqual([9]);
    // A version 1 event (one change at the top level) is not ours to guess at.
    expect(
      parseJobEvents({
        schema_id: EVENT_SCHEMA_ID,
        action: 'created',
        id: 7,
        status: 'queued'
      })
    ).toEqual([]);
    expect(warn).toHaveBeenCalledTimes(5);
    warn.mockRestore();
  });
});

describe('LiveUpdates', () => {
  function setup(withEvents: boolean, retryMax?: number) {
    const api = new FakeApi();
    api.add(makeJob(1), makeJob(2));
    const model = new JobsModel({ client: api.asClient(), fetchDelay: 5 });
    const events = withEvents ? new FakeEvents() : null;
    const live = new LiveUpdates({
      model,
      events: events as any,
      fastInterval: 20,
      slowInterval: 60_000,
      quietAfter: 0,
      retryMax
    });
    return { api, model, events, live };
  }

  /** What the server's event for `api.move(...)` looks like on the stream. */
  function emit(events: FakeEvents, event: IJobEvent) {
    events.stream.emit({ schema_id: EVENT_SCHEMA_ID, jobs: [event] });
  }

  it('applies events from the stream and trusts them (slow poll)', async () => {
    const { api, model, events, live } = setup(true);
    await waitFor(() => model.loaded);
    expect(live.live).toBe(true);
    const listings = api.calls.filter(c => c.startsWith('list')).length;
    api.set(2, { status: 'running' });
    events!.stream.emit({
      schema_id: EVENT_SCHEMA_ID,
      jobs: [
        {
          action: 'transition',
          id: 2,
          name: 'job-2',
          owner: '',
          status: 'running',
          previous: 'queued',
          reason: null,
          attempt: 1,
          progress: null
        }
      ]
    });
    expect(model.get(2)!.status).toBe('running');
    events!.stream.emit({
      schema_id: 'other',
      id: 1,
      action: 'deleted',
      status: 'queued'
    });
    expect(model.get(1)).toBeDefined();
    await new Promise(resolve => setTimeout(resolve, 100));
    // No fast polling while events are trusted.
    expect(api.calls.filter(c => c.startsWith('list')).length).toBe(listings);
    live.dispose();
    model.dispose();
  });

  it('polls every few seconds without an event manager', async () => {
    const { api, model, live } = setup(false);
    await waitFor(() => model.loaded);
    expect(live.live).toBe(false);
    api.add(makeJob(3, { name: 'arrived' }));
    await waitFor(() => model.get(3) !== undefined);
    expect(model.get(3)!.name).toBe('arrived');
    live.dispose();
    model.dispose();
  });

  it('reads the list and its numbers again on the first event after an outage', async () => {
    // Polls are a minute apart here: only the reconnection can set things right in time.
    const { api, model, events, live } = setup(true, 60_000);
    await waitFor(() => model.loaded);
    const spy = jest
      .spyOn(console, 'error')
      .mockImplementation(() => undefined);
    api.failing.list = new Error('server stopped');
    await live.refresh().catch(() => undefined);
    await waitFor(() => model.error !== null);
    // The server restarts: its recovery fails job 1 before anyone listens, then job 2 runs.
    api.failing.list = undefined;
    api.set(1, { status: 'failed', reason: 'interrupted' });
    emit(events!, api.move(2, 'running'));
    await waitFor(() => model.get(1)?.status === 'failed');
    await waitFor(() => model.error === null);
    expect(model.totals).toEqual(api.counts());
    expect(model.counts).toEqual(api.counts());
    spy.mockRestore();
    live.dispose();
    model.dispose();
  });

  it('reads the list again when an event shows that others were missed', async () => {
    const { api, model, events, live } = setup(true, 60_000);
    await waitFor(() => model.loaded);
    api.set(2, { status: 'cancelled' }); // missed
    api.set(1, { status: 'running' }); // missed
    emit(events!, api.move(1, 'succeeded')); // from running, the list says queued
    await waitFor(() => model.get(2)?.status === 'cancelled');
    expect(model.totals).toEqual(api.counts());
    live.dispose();
    model.dispose();
  });

  it('falls back to polling when a poll finds what no event announced', async () => {
    const { api, model, live } = setup(true);
    await waitFor(() => model.loaded);
    api.set(1, { status: 'failed' });
    await live.refresh();
    await waitFor(() => !live.live);
    // Now polling fast: the next change shows up without any event.
    api.set(2, { status: 'succeeded' });
    await waitFor(() => model.get(2)?.status === 'succeeded');
    live.dispose();
    model.dispose();
  });
});
