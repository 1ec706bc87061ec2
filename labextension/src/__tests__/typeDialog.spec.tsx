/**
 * The "New job" form against a real HTTP server on localhost (real fetch, the real client):
 * the types it lists, the form generated from a type's schema, the request it sends, and a
 * 400 that names parameters shown beside their fields. And a typed job's summary view.
 */

import { ReactWidget } from '@jupyterlab/apputils';
import { nullTranslator } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';
import * as React from 'react';

import { isFlat, jsonText, TypedSummary } from '../summary';
import { TypedJobForm, typedRequest } from '../typeDialog';
import type { IJob, IJobType } from '../types';
import { makeJob, makeJobType, rendered, TRAIN_TYPE } from './fakes';
import { ScriptedServer } from './scripted';

const TRAIN = TRAIN_TYPE;
const BROKEN: IJobType = makeJobType('broken', { error: 'cannot be imported' });

const server = new ScriptedServer();

beforeAll(() => server.start());

afterAll(() => server.stop());

beforeEach(() => server.reset());

afterEach(() => {
  document.body.innerHTML = '';
});

async function mount() {
  const done: IJob[] = [];
  const form = new TypedJobForm({
    client: server.client(),
    onDone: job => void done.push(job)
  });
  Widget.attach(form, document.body);
  const render = () => rendered(form);
  server.queue.push({ status: 200, body: { types: [BROKEN, TRAIN] } });
  await form.load();
  await render();
  return { form, done, render };
}

describe('typedRequest', () => {
  it('sends the type and parameters, and a name only when one is given', () => {
    expect(typedRequest('train', { epochs: 2 }, '  ')).toEqual({
      type: 'train',
      parameters: { epochs: 2 }
    });
    expect(typedRequest('train', {}, ' nightly ')).toEqual({
      type: 'train',
      parameters: {},
      spec: { name: 'nightly' }
    });
  });
});

describe('TypedJobForm', () => {
  it('generates the form of the first type that loads and starts the job', async () => {
    const { form, done, render } = await mount();
    expect(server.recorded[0].url).toBe('/jobs/api/types');
    expect(form.typed.chosen).toBe('train');
    const options = [
      ...form.node.querySelectorAll('select[name="type"] option')
    ] as HTMLOptionElement[];
    expect(options.map(o => [o.value, o.disabled])).toEqual([
      ['broken', true],
      ['train', false]
    ]);
    // The form shows the schema's fields with their defaults, which are what is sent.
    const epochs = form.node.querySelector<HTMLInputElement>(
      '#jp-JobsTypeForm_epochs'
    )!;
    expect(epochs.value).toBe('3');
    expect(form.typed.parameters).toEqual({ epochs: 3, model: 'linear' });
    server.queue.push({ status: 201, body: makeJob(7, { kind: 'typed' }) });
    await form.submit();
    await render();
    expect(JSON.parse(server.recorded[1].body)).toEqual({
      type: 'train',
      parameters: { epochs: 3, model: 'linear' }
    });
    expect(done.map(job => job.id)).toEqual([7]);
  });

  it('checks the parameters before sending them', async () => {
    const { form, done, render } = await mount();
    form.typed.parameters = { epochs: 0, model: 'linear' };
    await form.submit();
    await render();
    expect(server.recorded).toHaveLength(1); // the types only: nothing was sent
    expect(form.error).toBe('Check the parameters marked below.');
    expect(form.node.textContent).toContain('must be >= 1');
    expect(done).toEqual([]);
  });

  it('shows a 400 beside the parameters it names and stays open', async () => {
    const { form, done, render } = await mount();
    server.queue.push({
      status: 400,
      body: {
        message: "job type 'train': parameters.model: 'tree' is not available",
        reason: 'Bad Request',
        type: 'InvalidRequest',
        detail: {
          type: 'train',
          parameters: { 'parameters.model': "'tree' is not available" }
        }
      }
    });
    form.typed.parameters = { epochs: 2, model: 'tree' };
    await form.submit();
    await render();
    expect(form.error).toContain('parameters.model');
    expect(form.typed.extraErrors).toEqual({
      model: { __errors: ["'tree' is not available"] }
    });
    expect(form.node.querySelector('[role="alert"]')!.textContent).toContain(
      'parameters.model'
    );
    expect(form.node.textContent).toContain("'tree' is not available");
    expect(done).toEqual([]);
  });

  it('says how to get job types when there are none', async () => {
    const form = new TypedJobForm({
      client: server.client(),
      onDone: () => {}
    });
    Widget.attach(form, document.body);
    server.queue.push({ status: 200, body: { types: [] } });
    await form.load();
    await rendered(form);
    expect(form.node.textContent).toContain('@jupyter_jobs.job_type');
  });
});

describe('TypedSummary', () => {
  async function shown(job: IJob): Promise<HTMLElement> {
    const trans = nullTranslator.load('jupyter_jobs');
    const widget = ReactWidget.create(<TypedSummary job={job} trans={trans} />);
    Widget.attach(widget, document.body);
    await rendered(widget);
    return widget.node;
  }

  it('shows a flat summary as names and values, anything else as JSON', async () => {
    const flat = await shown(
      makeJob(1, { summary: { accuracy: 0.93, note: '<b>x</b>' } })
    );
    expect([...flat.querySelectorAll('dt')].map(n => n.textContent)).toEqual([
      'accuracy',
      'note'
    ]);
    expect(flat.querySelector('b')).toBeNull(); // text, never HTML
    const nested = await shown(makeJob(2, { summary: { per: { a: 1 } } }));
    expect(nested.querySelector('pre')!.textContent).toBe(
      JSON.stringify({ per: { a: 1 } }, null, 2)
    );
    expect((await shown(makeJob(3))).textContent).toBe('');
  });

  it('tells flat objects and cuts long JSON', () => {
    expect(isFlat({ a: 1, b: null })).toBe(true);
    expect(isFlat([1])).toBe(false);
    expect(isFlat({ a: [] })).toBe(false);
    expect(jsonText({ a: 'x'.repeat(300) }, 20)).toHaveLength(20);
  });
});
