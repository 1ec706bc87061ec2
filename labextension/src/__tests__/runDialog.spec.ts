import { Widget } from '@lumino/widgets';

import { JobsClient } from '../client';
import {
  buildRequest,
  errorField,
  initialState,
  IRunFormOptions,
  IRunResult,
  RunForm,
  stateFromSchedule
} from '../runDialog';
import {
  FakeApi,
  makeSchedule,
  REPORT_TYPE,
  TRAIN_TYPE,
  waitFor,
  rendered
} from './fakes';
import { ScriptedServer } from './scripted';

/** Type into an input as a user does, so React's onChange runs. */
function type(node: HTMLInputElement, value: string): void {
  const setter = Object.getOwnPropertyDescriptor(
    HTMLInputElement.prototype,
    'value'
  )!.set!;
  setter.call(node, value);
  node.dispatchEvent(new Event('input', { bubbles: true }));
}

async function mount(
  api: FakeApi | JobsClient,
  path = 'work/report.ipynb',
  options: Partial<IRunFormOptions> = {}
) {
  const done: IRunResult[] = [];
  const form = new RunForm(path, {
    client: api instanceof FakeApi ? api.asClient() : api,
    kernels: [{ name: 'python3', display: 'Python 3' }],
    onDone: result => void done.push(result),
    timezones: ['UTC', 'Europe/Paris'],
    previewDelay: 0,
    ...options
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

describe('buildRequest for a job type', () => {
  const typed = { type: 'report', parameters: { region: 'EU', days: 2 } };

  it('runs now: a typed submit with the options and the channel', () => {
    const state = {
      ...initialState(''),
      name: ' weekly ',
      priority: '2',
      channel: ' reports '
    };
    expect(state.target).toBe('typed');
    expect(buildRequest(state, typed)).toEqual({
      kind: 'typed',
      body: {
        type: 'report',
        parameters: { region: 'EU', days: 2 },
        spec: {
          name: 'weekly',
          priority: 2,
          timeout: null,
          retries: 0,
          channel: 'reports'
        }
      }
    });
  });

  it('makes a typed schedule, named after its type unless named', () => {
    const state = {
      ...initialState('', 'schedule'),
      preset: 'every' as const,
      minutes: '5'
    };
    expect(buildRequest(state, typed)).toEqual({
      kind: 'schedule',
      body: {
        name: '',
        target: {
          kind: 'typed',
          type: 'report',
          parameters: { region: 'EU', days: 2 }
        },
        cron: null,
        every: 300,
        timezone: null,
        job: { priority: 0, timeout: null, retries: 0 }
      }
    });
    expect(() => buildRequest(state, null)).toThrow(
      expect.objectContaining({ field: 'type' })
    );
  });

  it("fills the form from a typed schedule and its job's channel", () => {
    const state = stateFromSchedule(
      makeSchedule(5, {
        name: 'nightly',
        target: { kind: 'typed', type: 'report', parameters: { days: 1 } },
        job: { channel: 'night', retries: 1 }
      })
    );
    expect(state).toMatchObject({
      target: 'typed',
      name: 'nightly',
      parameters: [],
      channel: 'night',
      retries: '1',
      mode: 'schedule'
    });
  });

  it('names the fields of job-type errors', () => {
    const state = initialState('');
    expect(errorField("job type 'trian' not found (job types: x)", state)).toBe(
      'type'
    );
    expect(
      errorField("job type 'report': parameters.days: 0 is less than", state)
    ).toBe('parameters');
    expect(errorField("job: channel: 'a/b' does not match", state)).toBe(
      'channel'
    );
  });
});

describe('RunForm and job types', () => {
  /** The radio buttons of what to run: value and whether on, off or disabled. */
  function targets(form: RunForm): string[] {
    return [
      ...form.node.querySelectorAll<HTMLInputElement>('input[name="target"]')
    ].map(
      radio =>
        `${radio.value}${radio.checked ? ' on' : ''}${radio.disabled ? ' disabled' : ''}`
    );
  }

  it('offers a job type as the target only once the server knows one', async () => {
    const none = new FakeApi();
    const plain = await mount(none);
    await plain.form.load();
    await plain.render();
    expect(targets(plain.form)).toEqual([]);
    expect(none.calls).toContain('types');
    const api = new FakeApi();
    api.jobTypes = [TRAIN_TYPE];
    const { form, render } = await mount(api);
    await form.load();
    await render();
    expect(targets(form)).toEqual(['notebook on', 'typed']);
    expect(form.state.name).toBe('report');
    form.setTarget('typed');
    await render();
    expect(form.state.name).toBe(''); // the type's name, unless one is given
    expect(
      form.node.querySelector('#jp-JobsRunForm-type_epochs')
    ).not.toBeNull();
    expect(form.node.querySelector('select[name="kernel"]')).toBeNull();
    form.setTarget('notebook');
    expect(form.state.name).toBe('report');
  });

  it('says what to do when there is neither a notebook nor a job type', async () => {
    const { form, render } = await mount(new FakeApi(), '');
    await form.load();
    await render();
    expect(form.node.textContent).toContain('Open a notebook');
    expect(form.node.querySelector('.jp-JobsRunForm-submit')).toBeNull();
  });

  it("creates a typed schedule from the type's form, without scheduled_time", async () => {
    const api = new FakeApi();
    api.jobTypes = [TRAIN_TYPE, REPORT_TYPE];
    const { form, done, render, query } = await mount(api, '', {
      mode: 'schedule'
    });
    await form.load();
    await render();
    expect(targets(form)).toEqual(['notebook disabled', 'typed on']);
    const select = query<HTMLSelectElement>('select[name="type"]')!;
    select.value = 'report';
    select.dispatchEvent(new Event('change', { bubbles: true }));
    await render();
    expect(form.typed.chosen).toBe('report');
    // each run receives its time: the form neither asks for it nor sends it
    expect(query('#jp-JobsRunForm-type_scheduled_time')).toBeNull();
    expect(query('.jp-JobsRunForm-scheduledTime')!.textContent).toContain(
      'scheduled_time: each run receives its own time'
    );
    type(query<HTMLInputElement>('#jp-JobsRunForm-type_region')!, 'EU');
    await render();
    type(query<HTMLInputElement>('input[name="channel"]')!, 'nightly');
    await render();
    form.set({ preset: 'every', minutes: '60' });
    await form.submit();
    expect(done).toHaveLength(1);
    expect(api.requests).toEqual([
      {
        name: '',
        target: {
          kind: 'typed',
          type: 'report',
          parameters: { region: 'EU', days: 7, rate: 0.5, draft: false }
        },
        cron: null,
        every: 3600,
        timezone: null,
        job: { priority: 0, timeout: null, retries: 0, channel: 'nightly' }
      }
    ]);
    expect(done[0].kind).toBe('schedule');
  });

  it('checks the parameters against the schema before anything is sent', async () => {
    const api = new FakeApi();
    api.jobTypes = [REPORT_TYPE];
    const { form, done, render, query } = await mount(api, '', {
      mode: 'schedule'
    });
    await form.load();
    await form.submit();
    await render();
    expect(api.requests).toEqual([]);
    expect(done).toEqual([]);
    const error = query<HTMLElement>('.jp-JobsRunForm-error')!;
    expect(error.dataset.field).toBe('parameters');
    expect(error.textContent).toBe('Check the parameters marked below.');
    expect(Object.keys(form.typed.extraErrors)).toEqual(['region']);
    expect(form.node.textContent).toContain(
      "must have required property 'Region'"
    );
  });

  it('runs a job of the type now, scheduled_time then its to give', async () => {
    const api = new FakeApi();
    api.jobTypes = [REPORT_TYPE];
    const { form, done, render, query } = await mount(api, '');
    await form.load();
    await render();
    expect(query('#jp-JobsRunForm-type_scheduled_time')).not.toBeNull();
    form.typed.parameters = {
      ...form.typed.parameters,
      region: 'EU',
      scheduled_time: '2027-01-01T00:00:00Z'
    };
    form.set({ name: 'once' });
    await form.submit();
    expect(api.calls).toContain('submitTyped');
    expect(api.requests[0]).toEqual({
      type: 'report',
      parameters: {
        region: 'EU',
        days: 7,
        rate: 0.5,
        draft: false,
        scheduled_time: '2027-01-01T00:00:00Z'
      },
      spec: { name: 'once', priority: 0, timeout: null, retries: 0 }
    });
    expect(done[0]).toMatchObject({ kind: 'job', job: { type: 'report' } });
  });

  it('edits a typed schedule with PATCH, its parameters kept', async () => {
    const api = new FakeApi();
    api.jobTypes = [REPORT_TYPE];
    const schedule = makeSchedule(6, {
      name: 'eu',
      every: 3600,
      target: {
        kind: 'typed',
        type: 'report',
        parameters: { region: 'EU', days: 3 }
      },
      job: { channel: 'eu' }
    });
    api.schedulesById.set(6, schedule);
    const { form, done, render } = await mount(api, '', { schedule });
    await form.load();
    await render();
    expect(targets(form)).toEqual([]); // a schedule keeps its kind of target
    expect(form.typed.parameters).toMatchObject({ region: 'EU', days: 3 });
    form.typed.parameters = { ...form.typed.parameters, days: 4 };
    await form.submit();
    expect(api.calls).toContain('updateSchedule 6');
    expect(api.schedulesById.get(6)).toMatchObject({
      target: {
        kind: 'typed',
        type: 'report',
        parameters: { region: 'EU', days: 4, rate: 0.5, draft: false }
      },
      job: { channel: 'eu' }
    });
    expect(done).toHaveLength(1);
    form.dispose();
  });
});

describe("RunForm and the server's 400 (a real HTTP server)", () => {
  const server = new ScriptedServer();

  beforeAll(() => server.start());

  afterAll(() => server.stop());

  it('shows each parameter the server names by its field, and its message', async () => {
    const refusal = {
      message:
        "job type 'report': parameters.days: 9 is greater than the maximum of 5",
      reason: 'Bad Request',
      type: 'InvalidRequest',
      detail: {
        type: 'report',
        parameters: {
          'parameters.days': '9 is greater than the maximum of 5'
        }
      }
    };
    server.answer = request => {
      if (request.url.startsWith('/jobs/api/types')) {
        return { status: 200, body: JSON.stringify({ types: [REPORT_TYPE] }) };
      }
      if (request.url.startsWith('/jobs/api/schedules/preview')) {
        const preview = { description: 'Every hour', next: [1, 2, 3] };
        return { status: 200, body: JSON.stringify(preview) };
      }
      return { status: 400, body: JSON.stringify(refusal) };
    };
    const { form, done, render, query } = await mount(server.client(), '', {
      mode: 'schedule'
    });
    await form.load();
    form.typed.parameters = { ...form.typed.parameters, region: 'EU', days: 9 };
    form.set({ preset: 'every', minutes: '60' });
    await form.submit();
    await render();
    const posted = server.recorded.find(r => r.method === 'POST')!;
    expect(JSON.parse(posted.body).target.parameters.days).toBe(9);
    expect(done).toEqual([]);
    const error = query<HTMLElement>('.jp-JobsRunForm-error')!;
    expect(error.dataset.field).toBe('parameters');
    expect(error.textContent).toBe(refusal.message);
    expect(form.typed.extraErrors).toEqual({
      days: { __errors: ['9 is greater than the maximum of 5'] }
    });
    const days = query<HTMLElement>('#jp-JobsRunForm-type_days')!;
    expect(days.closest('.form-group')!.textContent).toContain(
      '9 is greater than the maximum of 5'
    );
    form.dispose();
  });
});
