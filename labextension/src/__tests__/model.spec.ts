import { IJobTransition, JobsModel } from '../model';
import { Deferred, FakeApi, makeEvent, makeJob } from './fakes';

/** A model over a fake API holding jobs 1..n (all queued unless said otherwise). */
function setup(n: number, pageSize = 10) {
  const api = new FakeApi();
  for (let id = 1; id <= n; id++) {
    api.add(makeJob(id));
  }
  const model = new JobsModel({
    client: api.asClient(),
    pageSize,
    fetchDelay: 10_000 // tests flush by hand
  });
  const transitions: IJobTransition[] = [];
  model.transition.connect((_, t) => transitions.push(t));
  return { api, model, transitions };
}

const ids = (model: JobsModel) => model.jobs.map(job => job.id);

describe('JobsModel paging', () => {
  it('loads the first page newest first, with the global counts', async () => {
    const { model } = setup(25);
    await model.load();
    expect(ids(model)).toEqual([25, 24, 23, 22, 21, 20, 19, 18, 17, 16]);
    expect(model.hasMore).toBe(true);
    expect(model.loaded).toBe(true);
    expect(model.counts.queued).toBe(25);
  });

  it('loads older pages with the cursor until there are none', async () => {
    const { model, api } = setup(25);
    await model.load();
    await model.loadMore();
    await model.loadMore();
    expect(ids(model)).toEqual(Array.from({ length: 25 }, (_, i) => 25 - i));
    expect(model.hasMore).toBe(false);
    expect(
      api.calls.filter(call => call.includes('"cursor":"16"'))
    ).toHaveLength(1);
    // Nothing left: no further request.
    const before = api.calls.length;
    await model.loadMore();
    expect(api.calls.length).toBe(before);
  });

  it('keeps 10,000 jobs in order without duplicates across pages', async () => {
    const { model } = setup(10_000, 500);
    await model.load();
    while (model.hasMore) {
      await model.loadMore();
    }
    expect(model.jobs.length).toBe(10_000);
    expect(new Set(ids(model)).size).toBe(10_000);
    expect(model.jobs[0].id).toBe(10_000);
    expect(model.jobs[9_999].id).toBe(1);
  });
});

describe('JobsModel filters', () => {
  it('asks the server for the chosen statuses and search text', async () => {
    const { model, api } = setup(6);
    api.set(2, { status: 'failed' });
    api.set(5, { status: 'failed', name: 'train model' });
    await model.setFilter({ statuses: ['failed'] });
    expect(ids(model)).toEqual([5, 2]);
    const listings = api.calls.filter(call => call.startsWith('list'));
    expect(listings[listings.length - 1]).toContain('"status":["failed"]');
    await model.setFilter({ query: 'TRAIN' });
    expect(ids(model)).toEqual([5]);
    expect(model.filter).toEqual({
      statuses: ['failed'],
      query: 'TRAIN',
      mine: false,
      type: ''
    });
  });

  it('counts per status within the search, totals over all jobs', async () => {
    const { model, api } = setup(4);
    api.set(1, { name: 'fit a' });
    api.set(2, { name: 'fit b', status: 'running' });
    await model.setFilter({ query: 'fit' });
    expect(model.counts).toEqual({ queued: 1, running: 1 });
    expect(model.totals).toEqual({ queued: 3, running: 1 });
    // An event for a job outside the search moves the totals only.
    model.applyEvent(api.move(4, 'running'));
    expect(model.counts).toEqual({ queued: 1, running: 1 });
    expect(model.totals).toEqual({ queued: 2, running: 2 });
    model.applyEvent(api.move(1, 'running'));
    expect(model.counts).toEqual({ queued: 0, running: 2 });
    expect(model.totals).toEqual({ queued: 1, running: 3 });
  });

  it('matches jobs by status, and by name or notebook as the server searches', () => {
    const { model } = setup(0);
    void model.setFilter({ statuses: ['running'], query: 'Fit' });
    const job = (status: 'running' | 'queued', name: string, owner = '') => ({
      status,
      name,
      owner,
      user: 'ana',
      type: null
    });
    expect(model.matches(job('running', 'model fitting'))).toBe(true);
    expect(model.matches(job('queued', 'model fitting'))).toBe(false);
    expect(model.matches(job('running', 'plot'))).toBe(false);
    expect(model.matches(job('running', 'plot', 'work/FIT.ipynb'))).toBe(true);
    // SQLite's LIKE folds ASCII case only, so the model does too.
    void model.setFilter({ statuses: [], query: 'É' });
    expect(model.matches(job('running', 'é'))).toBe(false);
    expect(model.matches(job('running', 'É'))).toBe(true);
  });

  it('keeps a job found by its notebook name through its events', async () => {
    const { model, api } = setup(3);
    api.set(2, { name: 'fit', owner: 'experiments/train.ipynb' });
    await model.setFilter({ query: 'train.ipynb' });
    expect(ids(model)).toEqual([2]);
    model.applyEvent(api.move(2, 'running'));
    expect(ids(model)).toEqual([2]);
    expect(model.counts).toEqual({ running: 1, queued: 0 });
    await model.flush();
    expect(ids(model)).toEqual([2]);
    expect(model.get(2)!.status).toBe('running');
    // A job of that notebook not loaded yet comes in with its first event.
    api.add(makeJob(4, { name: 'plot', owner: 'experiments/train.ipynb' }));
    model.applyEvent(
      makeEvent(4, {
        action: 'created',
        status: 'queued',
        previous: null,
        name: 'plot',
        owner: 'experiments/train.ipynb'
      })
    );
    expect(ids(model)).toEqual([4, 2]);
  });

  it('shows the actions an event carries until the record is read again', async () => {
    const { model, api } = setup(1);
    await model.load();
    expect(model.get(1)!.actions).toEqual(['cancel', 'delete']);
    model.applyEvent(api.move(1, 'failed', { reason: 'error' }));
    expect(model.get(1)!.actions).toEqual(['retry', 'delete']);
  });

  it('drops the answer of a listing overtaken by a newer filter', async () => {
    const { model, api } = setup(5);
    api.set(3, { status: 'failed' });
    const gate = new Deferred<void>();
    api.listGate = gate;
    const slow = model.load(); // held until the gate opens
    api.listGate = null;
    await model.setFilter({ statuses: ['failed'] });
    gate.resolve(); // the unfiltered answer arrives last
    await slow;
    expect(ids(model)).toEqual([3]);
    expect(model.loading).toBe(false);
  });
});

describe('JobsModel events', () => {
  it('shows a created job at once and its full record after the batched read', async () => {
    const { model, api } = setup(3);
    await model.load();
    api.add(makeJob(4, { name: 'new one', created_at: 42 }));
    model.applyEvent(
      makeEvent(4, {
        action: 'created',
        status: 'queued',
        previous: null,
        name: 'new one'
      })
    );
    expect(ids(model)).toEqual([4, 3, 2, 1]);
    expect(model.get(4)!.name).toBe('new one');
    expect(model.counts.queued).toBe(4);
    await model.flush();
    expect(model.get(4)!.created_at).toBe(42);
    expect(api.calls).toContain('status 4');
  });

  it('patches a transition at once and reports it exactly once', async () => {
    const { model, api, transitions } = setup(3);
    await model.load();
    model.applyEvent(api.move(2, 'running', { attempt: 1, started_at: 100 }));
    expect(model.get(2)!.status).toBe('running');
    expect(model.counts).toMatchObject({ queued: 2, running: 1 });
    await model.flush();
    expect(model.get(2)!.started_at).toBe(100);
    model.applyEvent(api.move(2, 'failed', { reason: 'error' }));
    await model.flush();
    expect(transitions.map(t => `${t.id}:${t.previous}->${t.status}`)).toEqual([
      '2:queued->running',
      '2:running->failed'
    ]);
    expect(transitions[1].reason).toBe('error');
  });

  it('applies progress without reading the job again', async () => {
    const { model, api } = setup(2);
    await model.load();
    model.applyEvent(
      makeEvent(1, {
        action: 'progress',
        status: 'queued',
        previous: null,
        progress: { done: 3, total: 10, message: 'epoch 3' }
      })
    );
    expect(model.get(1)!.progress).toEqual({
      done: 3,
      total: 10,
      message: 'epoch 3'
    });
    await model.flush();
    expect(api.calls.filter(call => call.startsWith('status'))).toEqual([]);
  });

  it("shows a typed job's summary from the event that ends it, without a read", async () => {
    const { model, api } = setup(2);
    api.set(1, { kind: 'typed', type: 'train' });
    await model.load();
    await model.flush();
    const before = api.calls.length;
    const summary = { accuracy: 0.75, epochs: 2 };
    model.applyEvent(
      makeEvent(1, {
        status: 'succeeded',
        previous: 'queued',
        type: 'train',
        summary
      })
    );
    expect(model.get(1)!.summary).toEqual(summary);
    expect(model.get(1)!.status).toBe('succeeded');
    expect(api.calls.length).toBe(before); // shown before any read
    // run again: its entry says the summary is gone, and so it is
    model.applyEvent(
      makeEvent(1, { status: 'queued', previous: 'succeeded', type: 'train' })
    );
    expect(model.get(1)!.summary).toBeNull();
    // a job created and ended within a window shows its summary from the start
    model.applyEvent(
      makeEvent(3, {
        action: 'created',
        status: 'succeeded',
        previous: null,
        type: 'train',
        summary
      })
    );
    expect(model.get(3)!.kind).toBe('typed');
    expect(model.get(3)!.summary).toEqual(summary);
  });

  it('removes a job that leaves the status filter and adds one that enters it', async () => {
    const { model, api } = setup(4);
    api.set(1, { status: 'running' });
    await model.setFilter({ statuses: ['running'] });
    expect(ids(model)).toEqual([1]);
    model.applyEvent(api.move(1, 'succeeded'));
    expect(ids(model)).toEqual([]);
    model.applyEvent(api.move(3, 'running'));
    expect(ids(model)).toEqual([3]);
    await model.flush();
    expect(ids(model)).toEqual([3]);
  });

  it('reports transitions of jobs outside the loaded window too', async () => {
    const { model, api, transitions } = setup(30);
    await model.load(); // 30..21 loaded
    model.applyEvent(api.move(5, 'failed', { reason: 'timeout' }));
    expect(model.get(5)).toBeUndefined();
    expect(transitions).toEqual([
      {
        id: 5,
        name: 'job-5',
        owner: 'analysis.ipynb',
        user: 'ana',
        status: 'failed',
        previous: 'queued',
        reason: 'timeout'
      }
    ]);
    await model.flush();
    expect(api.calls.filter(call => call.startsWith('status'))).toEqual([]);
  });

  it('forgets a deleted job and its count', async () => {
    const { model, api } = setup(3);
    await model.load();
    api.jobs.delete(2);
    model.applyEvent(
      makeEvent(2, { action: 'deleted', status: 'queued', previous: null })
    );
    expect(ids(model)).toEqual([3, 1]);
    expect(model.counts.queued).toBe(2);
  });

  it('does not step back to a record older than the last event', async () => {
    const { model, api, transitions } = setup(2);
    await model.load();
    model.applyEvent(api.move(1, 'running'));
    api.statusGate = new Deferred();
    const gate = api.statusGate;
    const reading = model.flush(); // reads job 1 while it is running
    api.statusGate = null;
    model.applyEvent(api.move(1, 'succeeded')); // arrives before the answer
    gate.resolve();
    await reading;
    expect(model.get(1)!.status).toBe('succeeded');
    await model.flush(); // the re-read the stale answer asked for
    expect(model.get(1)!.status).toBe('succeeded');
    expect(transitions.map(t => t.status)).toEqual(['running', 'succeeded']);
  });

  it('batches the reads of many touched jobs', async () => {
    const { model, api } = setup(450, 500);
    await model.load();
    for (let id = 1; id <= 450; id++) {
      model.applyEvent(api.move(id, 'running'));
    }
    await model.flush();
    const reads = api.calls.filter(call => call.startsWith('status'));
    expect(reads).toHaveLength(3); // 200 + 200 + 50
    expect(model.jobs.every(job => job.status === 'running')).toBe(true);
  });
});

describe('JobsModel counts', () => {
  it('reads the real numbers after a burst of events that moved them', async () => {
    const { model, api } = setup(4);
    await model.load();
    // A change no event announced (a server restart recovers jobs before anyone listens).
    api.set(3, { status: 'failed', reason: 'interrupted' });
    model.applyEvent(api.move(1, 'running'));
    expect(model.totals).toEqual({ queued: 3, running: 1 }); // patched at once
    await model.flush();
    expect(model.totals).toEqual(api.counts());
    expect(model.counts).toEqual(api.counts());
  });

  it('reads the counts within the search after events', async () => {
    const { model, api } = setup(4);
    api.set(2, { name: 'train' });
    api.set(4, { name: 'train again' });
    await model.setFilter({ query: 'train' });
    api.set(4, { status: 'failed' });
    model.applyEvent(api.move(2, 'running', { name: 'train' }));
    await model.flush();
    expect(model.counts).toEqual({ running: 1, failed: 1 });
    expect(model.totals).toEqual(api.counts());
    expect(api.calls).toContain('list {"q":"train","limit":1}');
  });

  it('never replaces numbers with those of an older answer', async () => {
    const { model, api } = setup(3);
    await model.load();
    api.listGate = new Deferred();
    const gate = api.listGate;
    const refreshing = model.refresh(); // its stats are read now, before the change
    api.listGate = null;
    model.applyEvent(api.move(1, 'running'));
    await model.flush(); // reads the numbers after the change
    expect(model.totals).toEqual({ queued: 2, running: 1 });
    gate.resolve();
    await refreshing;
    expect(model.totals).toEqual({ queued: 2, running: 1 });
  });

  it('says when an event does not follow from what it shows', async () => {
    const { model, api } = setup(2);
    await model.load();
    expect(model.applyEvent(api.move(1, 'running'))).toBe(true);
    api.set(2, { status: 'running' }); // missed
    expect(model.applyEvent(api.move(2, 'succeeded'))).toBe(false);
    // A job outside the list: nothing to compare with.
    expect(model.applyEvent(makeEvent(5))).toBe(true);
  });
});

describe('JobsModel refresh (polling)', () => {
  it('finds new, changed and deleted jobs and says whether anything changed', async () => {
    const { model, api, transitions } = setup(5);
    await model.load();
    expect(await model.refresh()).toBe(false);
    api.add(makeJob(6));
    api.set(2, { status: 'failed', reason: 'error' });
    api.jobs.delete(4);
    expect(await model.refresh()).toBe(true);
    expect(ids(model)).toEqual([6, 5, 3, 2, 1]);
    expect(model.get(2)!.status).toBe('failed');
    expect(transitions).toEqual([
      expect.objectContaining({ id: 2, previous: 'queued', status: 'failed' })
    ]);
    expect(model.counts).toMatchObject({ queued: 4, failed: 1 });
  });

  it('re-reads active jobs loaded beyond the first page', async () => {
    const { model, api } = setup(15, 10);
    await model.load();
    await model.loadMore(); // 15..1 loaded
    api.set(3, { status: 'running' });
    expect(await model.refresh()).toBe(true);
    expect(model.get(3)!.status).toBe('running');
    expect(api.calls).toContain('status 5,4,3,2,1');
  });

  it('loads the first page when nothing was loaded yet', async () => {
    const { model } = setup(3);
    expect(await model.refresh()).toBe(true);
    expect(ids(model)).toEqual([3, 2, 1]);
  });
});

describe('JobsModel errors', () => {
  it('keeps the message of a failed request and clears it on the next success', async () => {
    const { model, api } = setup(3);
    const spy = jest
      .spyOn(console, 'error')
      .mockImplementation(() => undefined);
    api.failing.list = new Error('503 Service Unavailable');
    await model.load();
    expect(model.error).toBe('503 Service Unavailable');
    expect(model.loading).toBe(false);
    expect(model.loaded).toBe(false);
    expect(spy).toHaveBeenCalled();
    api.failing.list = undefined;
    await model.load();
    expect(model.error).toBeNull();
    expect(ids(model)).toEqual([3, 2, 1]);
    spy.mockRestore();
  });

  it('puts the jobs returned by actions in place', async () => {
    const { model, api, transitions } = setup(2);
    await model.load();
    model.upsert(api.set(1, { status: 'cancelled' }));
    expect(model.get(1)!.status).toBe('cancelled');
    expect(transitions.map(t => t.status)).toEqual(['cancelled']);
    model.remove(1);
    expect(ids(model)).toEqual([2]);
  });
});

describe('JobsModel cost per event', () => {
  /** Elements visited by array methods (map, filter, slice, ...) while `fn` runs. */
  function arrayWork(fn: () => void): number {
    const names = [
      'map',
      'filter',
      'slice',
      'splice',
      'sort',
      'findIndex',
      'indexOf',
      'includes',
      'concat',
      'some',
      'every',
      'forEach'
    ] as const;
    const proto = Array.prototype as any;
    const originals = names.map(name => proto[name]);
    let visited = 0;
    names.forEach((name, i) => {
      proto[name] = function (this: unknown[], ...args: unknown[]) {
        visited += this.length;
        return originals[i].apply(this, args);
      };
    });
    try {
      fn();
    } finally {
      names.forEach((name, i) => (proto[name] = originals[i]));
    }
    return visited;
  }

  it('applies 10,000 events to 20,000 loaded jobs without walking the list', async () => {
    const { model, api } = setup(20_000, 20_000);
    await model.load();
    expect(model.jobs.length).toBe(20_000);
    let changes = 0;
    model.changed.connect(() => changes++);
    const events = [];
    for (let k = 0; k < 2_500; k++) {
      const id = 1 + ((k * 7919) % 20_000); // spread over the whole list
      events.push(api.move(id, 'running'));
      events.push(
        makeEvent(id, {
          action: 'progress',
          status: 'running',
          previous: null,
          progress: { done: k, total: null, message: null }
        })
      );
    }
    for (let id = 20_001; id <= 22_500; id++) {
      api.add(makeJob(id));
      events.push(
        makeEvent(id, { action: 'created', status: 'queued', previous: null })
      );
    }
    for (let id = 5_001; id <= 7_500; id++) {
      api.jobs.delete(id);
      events.push(
        makeEvent(id, { action: 'deleted', status: 'queued', previous: null })
      );
    }
    expect(events).toHaveLength(10_000);
    const batches: (typeof events)[] = [];
    for (let start = 0; start < events.length; start += 100) {
      batches.push(events.slice(start, start + 100));
    }
    const moved = model.moves;
    const work = arrayWork(() => {
      for (const batch of batches) {
        model.applyEvents(batch);
      }
    });
    // A few array elements per event (the entries themselves), not the 20,000 rows.
    expect(work).toBeLessThan(10 * events.length);
    expect(model.moves).toBe(moved);
    expect(changes).toBe(batches.length); // one "changed" per server event
    // What the list shows: the new jobs on top, the deleted ones gone, no growth.
    const shown = ids(model);
    expect(shown.length).toBe(20_000 - 2_500);
    expect(shown[0]).toBe(22_500);
    expect(shown).toEqual([...shown].sort((a, b) => b - a));
    expect(shown.includes(6_000)).toBe(false);
    expect(model.get(1 + 7919)!.status).toBe('running');
  });

  it('keeps the list at its loaded size through a burst of new jobs', async () => {
    const { model, api } = setup(30, 10);
    await model.load(); // 30..21
    for (let id = 31; id <= 1_030; id++) {
      api.add(makeJob(id));
      model.applyEvent(
        makeEvent(id, { action: 'created', status: 'queued', previous: null })
      );
    }
    expect(ids(model)).toEqual(Array.from({ length: 10 }, (_, i) => 1_030 - i));
    expect(model.hasMore).toBe(true);
    // "Load more" goes on from the oldest job shown.
    await model.loadMore();
    expect(ids(model).slice(10)).toEqual(
      Array.from({ length: 10 }, (_, i) => 1_020 - i)
    );
    expect(api.calls).toContain(
      'list {"status":[],"q":"","limit":10,"cursor":"1021"}'
    );
  });

  it('leaves older jobs that enter the filter to "load more"', async () => {
    const { model, api } = setup(40, 10);
    api.set(35, { status: 'failed' });
    api.set(5, { status: 'failed' });
    for (let id = 11; id <= 20; id++) {
      api.set(id, { status: 'failed' });
    }
    await model.setFilter({ statuses: ['failed'] }); // 35, 20..12
    expect(ids(model)).toEqual([35, 20, 19, 18, 17, 16, 15, 14, 13, 12]);
    model.applyEvent(api.move(3, 'failed', { reason: 'error' })); // older than all shown
    model.applyEvent(api.move(25, 'failed', { reason: 'error' })); // between shown ones
    // The page keeps its size: 12 makes room, and "load more" starts after 13.
    expect(ids(model)).toEqual([35, 25, 20, 19, 18, 17, 16, 15, 14, 13]);
    expect(model.moves).toBe(1);
    expect(model.hasMore).toBe(true);
    model.applyEvent(api.move(38, 'failed', { reason: 'error' })); // newer than all: on top
    expect(ids(model)[0]).toBe(38);
  });

  it('applies the entries of one event in order, coalesced ones included', async () => {
    const { model, api, transitions } = setup(3);
    await model.load();
    let changes = 0;
    model.changed.connect(() => changes++);
    api.add(
      makeJob(4, { status: 'succeeded' }),
      makeJob(5, { status: 'failed' })
    );
    const inStep = model.applyEvents([
      // Created and finished within one window: one entry with its final status.
      makeEvent(4, { action: 'created', status: 'succeeded', previous: null }),
      makeEvent(5, {
        action: 'created',
        status: 'failed',
        previous: null,
        reason: 'error'
      }),
      // Queued -> running -> succeeded within one window: one transition from queued.
      api.move(2, 'succeeded'),
      makeEvent(1, { action: 'deleted', status: 'queued', previous: null })
    ]);
    expect(inStep).toBe(true);
    expect(changes).toBe(1);
    expect(ids(model)).toEqual([5, 4, 3, 2]);
    expect(model.get(2)!.status).toBe('succeeded');
    expect(model.totals).toEqual({
      queued: 1,
      succeeded: 2,
      failed: 1
    });
    // The notifier hears of the jobs that ended, whichever way the window cut them.
    expect(transitions.map(t => `${t.id}:${t.previous}->${t.status}`)).toEqual([
      '4:null->succeeded',
      '5:null->failed',
      '2:queued->succeeded'
    ]);
  });

  it('keeps a job an action returned before the first page arrived', () => {
    const { model, api } = setup(3);
    model.upsert(api.set(2, { status: 'cancelled' }));
    expect(model.get(2)!.status).toBe('cancelled');
    expect(model.hasMore).toBe(false);
  });

  it('builds the list once per read after any number of events', async () => {
    const { model, api } = setup(100, 100);
    await model.load();
    const before = model.jobs;
    expect(model.jobs).toBe(before); // no change: the same array
    model.applyEvents([api.move(10, 'running'), api.move(20, 'running')]);
    const after = model.jobs;
    expect(after).not.toBe(before);
    expect(model.jobs).toBe(after);
    expect(after.find(job => job.id === 10)!.status).toBe('running');
  });
});

describe('JobsModel: whose jobs', () => {
  /** Jobs 1..4, alternately ana's (the user the fake server takes us for) and bob's. */
  function shared() {
    const { api, model, transitions } = setup(0);
    for (let id = 1; id <= 4; id++) {
      api.add(
        makeJob(id, id % 2 ? {} : { user: 'bob', user_display_name: 'Bob' })
      );
    }
    return { api, model, transitions };
  }

  it("lists everyone's jobs, or only the user's own under Mine", async () => {
    const { api, model } = shared();
    await model.load();
    expect(ids(model)).toEqual([4, 3, 2, 1]);
    expect(model.me?.username).toBe('ana');
    expect(model.mine).toBe(false);
    await model.setFilter({ mine: true });
    expect(ids(model)).toEqual([3, 1]);
    expect(model.counts).toEqual({ queued: 2 });
    expect(model.totals).toEqual({ queued: 2 });
    const calls = api.calls.slice(-2);
    expect(calls[0]).toContain('"mine":true');
    expect(calls[1]).toBe('stats mine');
    expect(api.calls.filter(call => call === 'me')).toHaveLength(1);
  });

  it("leaves other users' jobs out of the list and its numbers under Mine", async () => {
    const { api, model } = shared();
    await model.setFilter({ mine: true });
    api.add(makeJob(5, { user: 'bob' }), makeJob(6));
    model.applyEvents([
      makeEvent(5, { action: 'created', user: 'bob', status: 'queued' }),
      makeEvent(6, { action: 'created', status: 'queued' })
    ]);
    expect(ids(model)).toEqual([6, 3, 1]);
    expect(model.counts).toEqual({ queued: 3 });
    await model.flush();
    expect(api.calls.filter(call => call.startsWith('status'))).toEqual([
      'status 6'
    ]);
  });

  it('keeps a user who may not see everyone to their own jobs', async () => {
    const { api, model } = shared();
    api.me_ = { ...api.me_, can_read_all: false };
    await model.load();
    expect(model.mine).toBe(true);
    expect(model.filter.mine).toBe(false);
    expect(ids(model)).toEqual([3, 1]);
    model.applyEvent(makeEvent(4, { user: 'bob', previous: 'queued' }));
    await model.flush();
    expect(api.calls.some(call => call.startsWith('status'))).toBe(false);
  });

  it('says whose job moved, and shows all jobs when the server cannot say who', async () => {
    const { api, model, transitions } = shared();
    api.failing.me = new Error('404: no /me here');
    const warn = jest.spyOn(console, 'warn').mockImplementation(() => {});
    await model.setFilter({ mine: true });
    expect(warn).toHaveBeenCalled();
    warn.mockRestore();
    expect(model.me).toBeNull();
    expect(ids(model)).toEqual([3, 1]); // the server still applies mine
    expect(model.isMine('bob')).toBe(true);
    model.applyEvent(api.move(3, 'running'));
    expect(transitions.map(t => [t.id, t.user])).toEqual([[3, 'ana']]);
  });
});

describe('JobsModel: one job type', () => {
  /** Jobs 1..6: 1, 3 and 5 typed "train", 4 typed "explain", the others untyped. */
  function typed() {
    const { api, model } = setup(0);
    for (let id = 1; id <= 6; id++) {
      const type = id % 2 ? 'train' : id === 4 ? 'explain' : null;
      api.add(makeJob(id, type ? { kind: 'typed', type } : {}));
    }
    return { api, model };
  }

  it("asks for the type's jobs and counts, and keeps the totals of all", async () => {
    const { api, model } = typed();
    await model.setFilter({ type: 'train' });
    expect(ids(model)).toEqual([5, 3, 1]);
    expect(api.calls.slice(-2)[0]).toContain('"type":"train"');
    expect(model.counts).toEqual({ queued: 3 });
    expect(model.totals).toEqual({ queued: 6 });
    expect(model.matches({ ...makeJob(9), type: 'explain' })).toBe(false);
    await model.setFilter({ type: '' });
    expect(ids(model)).toEqual([6, 5, 4, 3, 2, 1]);
  });

  it("follows the type's jobs through their events, counts included", async () => {
    const { api, model } = typed();
    await model.setFilter({ type: 'train' });
    api.add(
      makeJob(7, { kind: 'typed', type: 'train' }),
      makeJob(8, { kind: 'typed', type: 'explain' })
    );
    model.applyEvents([
      makeEvent(7, { action: 'created', status: 'queued', type: 'train' }),
      makeEvent(8, { action: 'created', status: 'queued', type: 'explain' })
    ]);
    expect(ids(model)).toEqual([7, 5, 3, 1]);
    expect(model.counts).toEqual({ queued: 4 });
    expect(model.totals).toEqual({ queued: 8 });
    const before = api.calls.length;
    await model.flush(); // the real numbers: the type's kept counts, no listing
    expect(model.counts).toEqual({ queued: 4 });
    const read = api.calls.slice(before);
    expect(read).toContain('stats train');
    expect(read.some(call => call.startsWith('list'))).toBe(false);
  });

  it("reads the type's numbers from the server after events, under Mine too", async () => {
    const { api, model } = typed();
    await model.setFilter({ type: 'train', mine: true });
    api.set(3, { status: 'running' }); // a move whose event never came
    model.applyEvent(api.move(1, 'running'));
    expect(model.counts).toEqual({ queued: 2, running: 1 });
    await model.flush();
    expect(model.counts).toEqual({ queued: 1, running: 2 }); // the server's
    expect(model.totals).toEqual({ queued: 4, running: 2 });
    expect(api.calls).toContain('stats mine train');
    // a search within the type reads its counts from a listing, as every search does
    await model.setFilter({ query: 'job-5' });
    api.set(5, { status: 'failed' });
    model.applyEvent(api.move(3, 'succeeded'));
    await model.flush();
    expect(model.counts).toEqual({ failed: 1 });
    expect(api.calls.slice(-3).join(' ')).toContain(
      '"q":"job-5","type":"train","limit":1'
    );
  });
});
