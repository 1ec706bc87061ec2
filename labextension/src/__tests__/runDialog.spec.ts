import { Widget } from '@lumino/widgets';

import {
  buildRequest,
  errorField,
  initialState,
  IRunResult,
  RunForm
} from '../runDialog';
import { FakeApi, makeSchedule, waitFor, rendered } from './fakes';

/** Type into an input as a user does, so React's onChange runs. */
function type(node: HTMLInputElement, value: string): void {
  const setter = Object.getOwnPropertyDescriptor(
    HTMLInputElement.prototype,
    'value'
  )!.set!;
  setter.call(node, value);
  node.dispatchEvent(new Event('input', { bubbles: true }));
}

async function mount(api: FakeApi, path = 'work/report.ipynb') {
  const done: IRunResult[] = [];
  const form = new RunForm(path, {
    client: api.asClient(),
    kernels: [{ name: 'python3', display: 'Python 3' }],
    onDone: result => void done.push(result),
    timezones: ['UTC', 'Europe/Paris'],
    previewDelay: 0
  });
  Widget.attach(form, document.body);
  const render = () => rendered(form);
  await render();
  const query = <T extends Element>(selector: string) =>
    form.node.querySelector<T>(selector);
  return { form, done, render, query };
}

afterEach(() => {
  document.body.innerHTML = '';
});

describe('buildRequest', () => {
  it('runs now: a notebook job with JSON or text parameters and the options', () => {
    const state = {
      ...initialState('work/report.ipynb'),
      parameters: [
        { name: 'alpha', value: '0.5' },
        { name: 'region', value: 'north' },
        { name: 'days', value: '[1, 2]' }
      ],
      kernel: 'python3',
      priority: '3',
      timeout: '600',
      retries: '2'
    };
    expect(buildRequest(state)).toEqual({
      kind: 'job',
      body: {
        spec: {
          kind: 'notebook',
          name: 'report',
          priority: 3,
          timeout: 600,
          retries: 2
        },
        notebook: {
          path: 'work/report.ipynb',
          parameters: { alpha: 0.5, region: 'north', days: [1, 2] },
          kernel_name: 'python3'
        }
      }
    });
  });

  it('turns the presets into cron expressions in the chosen zone', () => {
    const base = {
      ...initialState('a.ipynb'),
      mode: 'schedule' as const,
      time: '07:30',
      timezone: 'Europe/Paris'
    };
    const cron = (fields: object) => {
      const request = buildRequest({ ...base, ...fields });
      if (request.kind !== 'schedule') {
        throw new Error('not a schedule');
      }
      return [request.body.cron, request.body.every, request.body.timezone];
    };
    expect(cron({ preset: 'hourly' })).toEqual([
      '0 * * * *',
      null,
      'Europe/Paris'
    ]);
    expect(cron({ preset: 'daily' })).toEqual([
      '30 7 * * *',
      null,
      'Europe/Paris'
    ]);
    expect(cron({ preset: 'weekdays' })).toEqual([
      '30 7 * * 1-5',
      null,
      'Europe/Paris'
    ]);
    expect(cron({ preset: 'cron', cron: ' */5 * * * * ' })).toEqual([
      '*/5 * * * *',
      null,
      'Europe/Paris'
    ]);
    expect(cron({ preset: 'every', minutes: '15' })).toEqual([null, 900, null]);
  });

  it('names the field of a value it cannot send', () => {
    const state = initialState('a.ipynb');
    expect(() => buildRequest({ ...state, retries: '-1' })).toThrow(
      expect.objectContaining({ field: 'retries' })
    );
    expect(() =>
      buildRequest({
        ...state,
        mode: 'schedule',
        preset: 'daily',
        time: '25:00'
      })
    ).toThrow(expect.objectContaining({ field: 'time' }));
    expect(() =>
      buildRequest({
        ...state,
        parameters: [
          { name: 'a', value: '1' },
          { name: 'a', value: '2' }
        ]
      })
    ).toThrow(expect.objectContaining({ field: 'parameter:1' }));
  });

  it('finds the field a server message names', () => {
    const state = {
      ...initialState('a.ipynb'),
      mode: 'schedule' as const,
      preset: 'cron' as const,
      parameters: [
        { name: 'ok', value: '1' },
        { name: 'bad-name', value: '2' }
      ]
    };
    expect(
      errorField("parameter name 'bad-name' is not an identifier", state)
    ).toBe('parameter:1');
    expect(errorField('unknown timezone: Mars/Base', state)).toBe('timezone');
    expect(errorField('Invalid cron expression: * *', state)).toBe('cron');
    expect(errorField('every must be at least 60 seconds', state)).toBe(
      'minutes'
    );
    expect(errorField('no kernelspec named nope', state)).toBe('kernel');
    expect(errorField('something else broke', state)).toBe('');
  });
});

describe('RunForm', () => {
  it('submits what the user typed and hands back the job', async () => {
    const api = new FakeApi();
    const { form, done, render, query } = await mount(api);
    query<HTMLButtonElement>('.jp-JobsRunForm-addParameter')!.click();
    await render();
    type(query<HTMLInputElement>('input[name="parameter-name-0"]')!, 'alpha');
    await render();
    type(query<HTMLInputElement>('input[name="parameter-value-0"]')!, '2');
    await render();
    type(query<HTMLInputElement>('input[name="name"]')!, 'nightly');
    await render();
    query<HTMLButtonElement>('.jp-JobsRunForm-submit')!.click();
    await waitFor(() => done.length === 1);
    expect(api.requests).toEqual([
      {
        spec: {
          kind: 'notebook',
          name: 'nightly',
          priority: 0,
          timeout: null,
          retries: 0
        },
        notebook: {
          path: 'work/report.ipynb',
          parameters: { alpha: 2 },
          kernel_name: null
        }
      }
    ]);
    expect(done[0].kind).toBe('job');
    form.dispose();
  });

  it('shows a 400 beside the parameter it names and stays open', async () => {
    const api = new FakeApi();
    const { form, done, render, query } = await mount(api);
    form.set({ parameters: [{ name: 'x-y', value: '1' }] });
    api.badRequest = "Bad parameter name 'x-y': not a Python identifier";
    await form.submit();
    await render();
    const error = query<HTMLElement>('.jp-JobsRunForm-error')!;
    expect(error.dataset.field).toBe('parameter:0');
    expect(error.textContent).toContain('x-y');
    expect(
      error.closest('.jp-JobsRunForm-parameter')!.querySelector('input')!.value
    ).toBe('x-y');
    expect(done).toEqual([]);
    // Fixing the name and submitting again goes through.
    form.set({ parameters: [{ name: 'x_y', value: '1' }] });
    await form.submit();
    expect(done).toHaveLength(1);
  });

  it('creates a schedule every N minutes, after showing its preview', async () => {
    const api = new FakeApi();
    const { form, done, render, query } = await mount(api);
    form.set({ mode: 'schedule', preset: 'every', minutes: '60' });
    await waitFor(() => form.preview !== null);
    await render();
    expect(query('.jp-JobsRunForm-description')!.textContent).toBe(
      'Every 3600 seconds'
    );
    expect(query('.jp-JobsRunForm-next')!.querySelectorAll('li')).toHaveLength(
      3
    );
    await form.submit();
    expect(done).toHaveLength(1);
    expect(api.requests[0]).toMatchObject({
      name: 'report',
      target: { kind: 'notebook', path: 'work/report.ipynb' },
      cron: null,
      every: 3600,
      timezone: null
    });
    expect([...api.schedulesById.values()]).toHaveLength(1);
  });

  it('shows a bad cron expression by the cron field', async () => {
    const api = new FakeApi();
    const { form, render, query } = await mount(api);
    form.set({ mode: 'schedule', preset: 'cron', cron: '* *' });
    await waitFor(() => 'cron' in form.errors);
    await render();
    const error = query<HTMLElement>('.jp-JobsRunForm-error')!;
    expect(error.dataset.field).toBe('cron');
    expect(error.textContent).toContain('Invalid cron expression');
  });

  it('edits a schedule with PATCH, keeping its notebook', async () => {
    const api = new FakeApi();
    const schedule = makeSchedule(4, {
      name: 'morning',
      cron: '0 8 * * 1-5',
      every: null,
      timezone: 'UTC',
      target: { kind: 'notebook', path: 'r.ipynb', parameters: { n: 3 } }
    });
    api.schedulesById.set(4, schedule);
    const done: IRunResult[] = [];
    const form = new RunForm('', {
      client: api.asClient(),
      kernels: [],
      schedule,
      onDone: result => void done.push(result),
      timezones: ['UTC']
    });
    expect(form.state).toMatchObject({
      preset: 'cron',
      cron: '0 8 * * 1-5',
      parameters: [{ name: 'n', value: '3' }]
    });
    form.set({ cron: '0 9 * * 1-5' });
    await form.submit();
    expect(api.calls).toContain('updateSchedule 4');
    expect(api.schedulesById.get(4)).toMatchObject({
      cron: '0 9 * * 1-5',
      target: { path: 'r.ipynb', parameters: { n: 3 } }
    });
    form.dispose();
  });
});
