import { ReactWidget } from '@jupyterlab/apputils';
import { nullTranslator } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';
import * as React from 'react';

import type { IWorker } from '../types';
import { WorkersFooter } from '../workers';
import { FakeApi, waitFor } from './fakes';

const trans = nullTranslator.load('jupyter_jobs');

function makeWorker(pid: number, fields: Partial<IWorker> = {}): IWorker {
  return {
    id: `host:${pid}`,
    pid,
    host: 'host',
    executor: 'local',
    state: 'idle',
    job: null,
    job_name: null,
    started_at: Date.now() / 1000 - 120,
    heartbeat_at: Date.now() / 1000 - 1,
    jobs_done: 0,
    waiting: 0,
    one_time: false,
    drainable: true,
    interpreter: '/usr/bin/python3',
    consumer: 'host:1:2.0',
    reported_at: Date.now() / 1000,
    ...fields
  };
}

function mount(api: FakeApi, poll = 20_000) {
  const widget = ReactWidget.create(
    <WorkersFooter client={api.asClient()} trans={trans} poll={poll} />
  );
  Widget.attach(widget, document.body);
  const chips = () => [
    ...widget.node.querySelectorAll<HTMLButtonElement>('.jp-JobsWorkers-chip')
  ];
  const card = () =>
    widget.node.querySelector<HTMLElement>('.jp-JobsWorkers-card');
  return { widget, chips, card };
}

afterEach(() => {
  document.body.innerHTML = '';
});

describe('WorkersFooter', () => {
  it('shows one chip per worker, with its state, pid and a summary on hover', async () => {
    const api = new FakeApi();
    api.workerList = [
      makeWorker(101, {
        state: 'busy',
        job: 7,
        job_name: 'train',
        jobs_done: 3
      }),
      makeWorker(102)
    ];
    const { widget, chips } = mount(api);
    await waitFor(() => chips().length === 2);
    expect(chips().map(chip => chip.textContent)).toEqual(['101', '102']);
    expect(chips()[0].dataset.state).toBe('busy');
    expect(chips()[0].title).toContain('job 7 train');
    expect(chips()[0].title).toContain('3 jobs done');
    expect(widget.node.textContent).toContain('1 busy of 2');
  });

  it('opens a card on click and drains the worker from it', async () => {
    const api = new FakeApi();
    api.workerList = [makeWorker(101, { state: 'busy', job: 7 })];
    const { chips, card } = mount(api);
    await waitFor(() => chips().length === 1);
    expect(card()).toBeNull();
    chips()[0].click();
    await waitFor(() => card() !== null);
    const text = card()!.textContent!;
    expect(text).toContain('101');
    expect(text).toContain('job 7');
    expect(text).toContain('ago');
    const drain = card()!.querySelector<HTMLButtonElement>(
      '.jp-JobsWorkers-drain'
    )!;
    drain.click();
    await waitFor(() => chips()[0].dataset.state === 'draining');
    expect(api.calls).toContain('drainWorker host:101');
    // A draining worker offers no second drain.
    await waitFor(
      () => card()!.querySelector('.jp-JobsWorkers-drain') === null
    );
    chips()[0].click();
    await waitFor(() => card() === null);
  });

  it('offers no drain for a worker that does not allow one', async () => {
    const api = new FakeApi();
    api.workerList = [makeWorker(5, { executor: 'dask', drainable: false })];
    const { chips, card } = mount(api);
    await waitFor(() => chips().length === 1);
    chips()[0].click();
    await waitFor(() => card() !== null);
    expect(card()!.querySelector('.jp-JobsWorkers-drain')).toBeNull();
  });

  it('renders what the server sends as text', async () => {
    const api = new FakeApi();
    const evil = '<img src=x onerror="window.__pwned = 1">';
    api.workerList = [makeWorker(9, { state: 'busy', job: 1, job_name: evil })];
    const { chips, card, widget } = mount(api);
    await waitFor(() => chips().length === 1);
    chips()[0].click();
    await waitFor(() => card() !== null);
    expect(card()!.textContent).toContain(evil);
    expect(widget.node.querySelector('img')).toBeNull();
  });

  it('says when the workers cannot be listed, and lists them once it can', async () => {
    const api = new FakeApi();
    api.failing.workers = new Error('server down');
    const { widget, chips } = mount(api, 30);
    await waitFor(() =>
      (widget.node.textContent ?? '').includes('server down')
    );
    api.failing.workers = undefined;
    api.workerList = [makeWorker(3)];
    await waitFor(() => chips().length === 1);
    expect(widget.node.querySelector('[role=alert]')).toBeNull();
  });

  it('does not poll while hidden', async () => {
    const api = new FakeApi();
    const { widget } = mount(api, 20);
    await waitFor(() => api.calls.includes('workers'));
    widget.hide();
    const before = api.calls.filter(call => call === 'workers').length;
    await new Promise(resolve => setTimeout(resolve, 150));
    expect(api.calls.filter(call => call === 'workers').length).toBe(before);
    widget.show();
    await waitFor(
      () => api.calls.filter(call => call === 'workers').length > before
    );
  });
});
