/**
 * The "New job" form against a real HTTP server on localhost (real fetch, the real client):
 * the types it lists, the form generated from a type's schema, the request it sends, and a
 * 400 that names parameters shown beside their fields. And a typed job's summary view.
 */

import * as http from 'http';
import { AddressInfo } from 'net';

import { ReactWidget } from '@jupyterlab/apputils';
import { ServerConnection } from '@jupyterlab/services';
import { nullTranslator } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';
import * as React from 'react';

import { JobsClient } from '../client';
import { isFlat, jsonText, TypedSummary } from '../summary';
import { errorSchemaOf, TypedJobForm, typedRequest } from '../typeDialog';
import type { IJob, IJobType } from '../types';
import { makeJob, rendered } from './fakes';

const TRAIN: IJobType = {
  name: 'train',
  description: 'Train a model.',
  schema: {
    type: 'object',
    properties: {
      epochs: { type: 'integer', minimum: 1, default: 3 },
      model: { type: 'string', enum: ['linear', 'tree'], default: 'linear' }
    },
    required: ['epochs'],
    additionalProperties: false
  },
  source: 'installed',
  entry_point: 'mltypes:train',
  summarize: true,
  owner: '',
  interpreter: null,
  cwd: null,
  created_at: null,
  error: null
};
const BROKEN: IJobType = {
  ...TRAIN,
  name: 'broken',
  error: 'cannot be imported'
};

interface IRecorded {
  method: string;
  url: string;
  body: string;
}

let server: http.Server;
let baseUrl: string;
let recorded: IRecorded[] = [];
let answers: { status: number; body: unknown }[] = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', chunk => chunks.push(chunk));
    req.on('end', () => {
      recorded.push({
        method: req.method!,
        url: req.url!.replace(/[?&]\d{10,}$/, ''),
        body: Buffer.concat(chunks).toString()
      });
      const answer = answers.shift() ?? { status: 500, body: {} };
      res.writeHead(answer.status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(answer.body));
    });
  });
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  baseUrl = `http://127.0.0.1:${port}/`;
});

afterAll(async () => {
  await new Promise(resolve => server.close(resolve));
});

beforeEach(() => {
  recorded = [];
  answers = [];
});

afterEach(() => {
  document.body.innerHTML = '';
});

function client(): JobsClient {
  return new JobsClient({
    serverSettings: ServerConnection.makeSettings({ baseUrl, token: 't' })
  });
}

async function mount() {
  const done: IJob[] = [];
  const form = new TypedJobForm({
    client: client(),
    onDone: job => void done.push(job)
  });
  Widget.attach(form, document.body);
  const render = () => rendered(form);
  answers.push({ status: 200, body: { types: [BROKEN, TRAIN] } });
  await form.load();
  await render();
  return { form, done, render };
}

describe('errorSchemaOf', () => {
  it('puts each parameter the server names under its path', () => {
    const detail = {
      type: 'train',
      parameters: {
        'parameters.epochs': '0 is less than the minimum of 1',
        'parameters.data.path': 'is required',
        'parameters.items[0]': 'bad',
        'parameters["odd key"]': 'odd',
        parameters: 'not an object'
      }
    };
    expect(errorSchemaOf(detail)).toEqual({
      __errors: ['not an object'],
      epochs: { __errors: ['0 is less than the minimum of 1'] },
      data: { path: { __errors: ['is required'] } },
      items: { 0: { __errors: ['bad'] } },
      'odd key': { __errors: ['odd'] }
    });
    expect(errorSchemaOf(null)).toEqual({});
    expect(errorSchemaOf({ id: 3 })).toEqual({});
  });
});

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
    expect(recorded[0].url).toBe('/jobs/api/types');
    expect(form.chosen).toBe('train');
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
    expect(form.parameters).toEqual({ epochs: 3, model: 'linear' });
    answers.push({ status: 201, body: makeJob(7, { kind: 'typed' }) });
    await form.submit();
    await render();
    expect(JSON.parse(recorded[1].body)).toEqual({
      type: 'train',
      parameters: { epochs: 3, model: 'linear' }
    });
    expect(done.map(job => job.id)).toEqual([7]);
  });

  it('checks the parameters before sending them', async () => {
    const { form, done, render } = await mount();
    form.parameters = { epochs: 0, model: 'linear' };
    await form.submit();
    await render();
    expect(recorded).toHaveLength(1); // the types only: nothing was sent
    expect(form.error).toBe('Check the parameters marked below.');
    expect(form.node.textContent).toContain('must be >= 1');
    expect(done).toEqual([]);
  });

  it('shows a 400 beside the parameters it names and stays open', async () => {
    const { form, done, render } = await mount();
    answers.push({
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
    form.parameters = { epochs: 2, model: 'tree' };
    await form.submit();
    await render();
    expect(form.error).toContain('parameters.model');
    expect(form.extraErrors).toEqual({
      model: { __errors: ["'tree' is not available"] }
    });
    expect(form.node.querySelector('[role="alert"]')!.textContent).toContain(
      'parameters.model'
    );
    expect(form.node.textContent).toContain("'tree' is not available");
    expect(done).toEqual([]);
  });

  it('says how to get job types when there are none', async () => {
    const form = new TypedJobForm({ client: client(), onDone: () => {} });
    Widget.attach(form, document.body);
    answers.push({ status: 200, body: { types: [] } });
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
