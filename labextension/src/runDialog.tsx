/**
 * The "Run as job…" dialog: a notebook with parameters, run now as a job or on a schedule.
 *
 * The form checks what it can (JSON values, numbers) and leaves the rest to the server: a 400's
 * message is shown beside the field it names, and the dialog stays open. The same form edits a
 * schedule (PATCH) from the Schedules view.
 */

import { Dialog, ReactWidget } from '@jupyterlab/apputils';
import {
  ITranslator,
  nullTranslator,
  TranslationBundle
} from '@jupyterlab/translation';
import * as React from 'react';

import { JobsClient } from './client';
import { formatTime } from './format';
import type {
  INotebookJobRequest,
  IPreviewQuery,
  ISchedule,
  IScheduleSpec,
  ISchedulePreview,
  JSONValue
} from './nbtypes';
import type { IJob } from './types';

/** How often a schedule fires, as the dialog offers it. */
export type Preset = 'hourly' | 'daily' | 'weekdays' | 'cron' | 'every';

/** One parameter row: a name and its value as typed. */
export interface IParameterRow {
  name: string;
  value: string;
}

/** Everything the form holds. Numbers stay text until the request is built. */
export interface IRunFormState {
  path: string;
  name: string;
  parameters: IParameterRow[];
  /** '' for the notebook's own kernel. */
  kernel: string;
  priority: string;
  /** Seconds; '' for none. */
  timeout: string;
  retries: string;
  mode: 'now' | 'schedule';
  preset: Preset;
  /** HH:MM for the daily and weekdays presets. */
  time: string;
  cron: string;
  /** Minutes, for the "every" preset. */
  minutes: string;
  timezone: string;
}

/** The browser's IANA time zone (the dialog's default). */
export function browserTimezone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
}

/** A fresh form for a notebook. */
export function initialState(path: string): IRunFormState {
  const base = path.split('/').pop() ?? path;
  return {
    path,
    name: base.replace(/\.ipynb$/, ''),
    parameters: [],
    kernel: '',
    priority: '0',
    timeout: '',
    retries: '0',
    mode: 'now',
    preset: 'daily',
    time: '08:00',
    cron: '0 8 * * *',
    minutes: '60',
    timezone: browserTimezone()
  };
}

/** The form filled from a schedule, to edit it. */
export function stateFromSchedule(schedule: ISchedule): IRunFormState {
  const state = initialState(schedule.target.path ?? '');
  const job = schedule.job ?? {};
  return {
    ...state,
    name: schedule.name,
    parameters: Object.entries(schedule.target.parameters ?? {}).map(
      ([name, value]) => ({
        name,
        value: typeof value === 'string' ? value : JSON.stringify(value)
      })
    ),
    kernel: schedule.target.kernel_name ?? '',
    priority: String(job.priority ?? 0),
    timeout:
      job.timeout === null || job.timeout === undefined
        ? ''
        : String(job.timeout),
    retries: String(job.retries ?? 0),
    mode: 'schedule',
    preset: schedule.every !== null ? 'every' : 'cron',
    cron: schedule.cron ?? state.cron,
    minutes:
      schedule.every !== null ? String(schedule.every / 60) : state.minutes,
    timezone: schedule.timezone ?? state.timezone
  };
}

/** A problem with one field of the form (`field` is a form field, or '' for the whole form). */
export class FieldError extends Error {
  constructor(
    readonly field: string,
    message: string
  ) {
    super(message);
  }
}

/** A parameter's value: JSON when it parses, else the text as a string. */
export function parseValue(text: string): JSONValue {
  try {
    return JSON.parse(text) as JSONValue;
  } catch {
    return text;
  }
}

/** The cron expression a preset stands for; null for the "every" preset. */
export function presetCron(state: IRunFormState): string | null {
  const match = /^(\d{1,2}):(\d{2})$/.exec(state.time.trim());
  const at = (days: string) => {
    if (!match || Number(match[1]) > 23 || Number(match[2]) > 59) {
      throw new FieldError('time', 'The time must be HH:MM, 00:00 to 23:59');
    }
    return `${Number(match[2])} ${Number(match[1])} * * ${days}`;
  };
  switch (state.preset) {
    case 'hourly':
      return '0 * * * *';
    case 'daily':
      return at('*');
    case 'weekdays':
      return at('1-5');
    case 'cron':
      return state.cron.trim();
    case 'every':
      return null;
  }
}

/** The query of the schedule preview for the form's timing. */
export function previewQuery(state: IRunFormState): IPreviewQuery {
  const cron = presetCron(state);
  return cron === null
    ? { every: everySeconds(state) }
    : { cron, timezone: state.timezone || null };
}

function everySeconds(state: IRunFormState): number {
  const minutes = Number(state.minutes);
  if (!state.minutes.trim() || !Number.isFinite(minutes) || minutes < 1) {
    throw new FieldError('minutes', 'Every: a number of minutes, at least 1');
  }
  return Math.round(minutes * 60);
}

function integer(state: IRunFormState, field: 'priority' | 'retries'): number {
  const value = Number(state[field]);
  if (!Number.isInteger(value) || (field === 'retries' && value < 0)) {
    throw new FieldError(field, `${field}: a whole number`);
  }
  return value;
}

/** The parameters as JSON values, checking names are given once each. */
export function parametersOf(state: IRunFormState): Record<string, JSONValue> {
  const parameters: Record<string, JSONValue> = {};
  state.parameters.forEach((row, index) => {
    const name = row.name.trim();
    if (!name && !row.value.trim()) {
      return;
    }
    if (!name) {
      throw new FieldError(`parameter:${index}`, 'A parameter needs a name');
    }
    if (name in parameters) {
      throw new FieldError(
        `parameter:${index}`,
        `Parameter ${name} is given twice`
      );
    }
    parameters[name] = parseValue(row.value);
  });
  return parameters;
}

/** The request the form stands for: a job now, or a schedule. Throws a FieldError. */
export function buildRequest(
  state: IRunFormState
):
  | { kind: 'job'; body: INotebookJobRequest }
  | { kind: 'schedule'; body: IScheduleSpec } {
  const parameters = parametersOf(state);
  const timeout = state.timeout.trim() ? Number(state.timeout) : null;
  if (timeout !== null && !(timeout > 0)) {
    throw new FieldError('timeout', 'Timeout: a number of seconds above 0');
  }
  const options = {
    name: state.name.trim() || undefined,
    priority: integer(state, 'priority'),
    timeout,
    retries: integer(state, 'retries')
  };
  const kernel_name = state.kernel || null;
  if (state.mode === 'now') {
    return {
      kind: 'job',
      body: {
        spec: { kind: 'notebook', ...options },
        notebook: { path: state.path, parameters, kernel_name }
      }
    };
  }
  const cron = presetCron(state);
  return {
    kind: 'schedule',
    body: {
      name: options.name ?? state.path,
      target: { kind: 'notebook', path: state.path, parameters, kernel_name },
      cron,
      every: cron === null ? everySeconds(state) : null,
      timezone: cron === null ? null : state.timezone || null,
      job: {
        priority: options.priority,
        timeout: options.timeout,
        retries: options.retries
      }
    }
  };
}

/**
 * The form field a server error names, '' when none: the server's messages name the field
 * (`cron`, `timezone`, `every`, a parameter's name, …).
 */
export function errorField(message: string, state: IRunFormState): string {
  const names = state.parameters.map(row => row.name.trim());
  const word = (text: string) =>
    new RegExp(
      `(^|[^\\w])${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}([^\\w]|$)`,
      'i'
    ).test(message);
  const index = names.findIndex(name => name && word(name));
  if (index >= 0 && /param/i.test(message)) {
    return `parameter:${index}`;
  }
  const fields: [string, string][] = [
    ['kernel', 'kernel'],
    ['timezone', 'timezone'],
    ['cron', 'cron'],
    ['every', 'minutes'],
    ['timeout', 'timeout'],
    ['retries', 'retries'],
    ['priority', 'priority'],
    ['param', 'parameters'],
    ['path', 'path'],
    ['notebook', 'path'],
    ['name', 'name']
  ];
  for (const [key, field] of fields) {
    if (new RegExp(key, 'i').test(message)) {
      if (field === 'cron' && state.preset !== 'cron') {
        return 'preset';
      }
      return field;
    }
  }
  return index >= 0 ? `parameter:${index}` : '';
}

/** What the form needs besides its state. */
export interface IRunFormOptions {
  client: JobsClient;
  /** Kernelspecs to offer: name and display name. */
  kernels: { name: string; display: string }[];
  /** Set to edit this schedule instead of creating a job or schedule. */
  schedule?: ISchedule | null;
  /** Called with what the server created or changed. */
  onDone: (result: IRunResult) => void;
  translator?: ITranslator;
  /** Time zones offered (defaults to the browser's list). */
  timezones?: string[];
  /** Delay before asking for a preview, in ms. */
  previewDelay?: number;
}

/** What a submission made. */
export type IRunResult =
  { kind: 'job'; job: IJob } | { kind: 'schedule'; schedule: ISchedule };

function allTimezones(): string[] {
  const intl = Intl as unknown as {
    supportedValuesOf?: (key: string) => string[];
  };
  try {
    return intl.supportedValuesOf?.('timeZone') ?? [];
  } catch {
    return [];
  }
}

/** The dialog's body: the form, its own submit button and the errors by field. */
export class RunForm extends ReactWidget {
  constructor(path: string, options: IRunFormOptions) {
    super();
    this.addClass('jp-JobsRunForm');
    this._options = options;
    this._trans = (options.translator ?? nullTranslator).load('jupyter_jobs');
    this.state = options.schedule
      ? stateFromSchedule(options.schedule)
      : initialState(path);
    const zones = options.timezones ?? allTimezones();
    this._timezones = zones.includes(this.state.timezone)
      ? zones
      : [this.state.timezone, ...zones];
  }

  /** The form's values. */
  state: IRunFormState;

  /** Errors by field ('' for the whole form). */
  errors: Record<string, string> = {};

  /** The last preview, or null. */
  preview: ISchedulePreview | null = null;

  /** Whether a request is on its way. */
  busy = false;

  /** Change some fields. */
  set(fields: Partial<IRunFormState>): void {
    this.state = { ...this.state, ...fields };
    this.errors = {};
    this.update();
    if (this.state.mode === 'schedule') {
      this._schedulePreview();
    }
  }

  /** Ask the server for the plain words and the next three runs of the timing. */
  async refreshPreview(): Promise<void> {
    let query: IPreviewQuery;
    try {
      query = previewQuery(this.state);
    } catch (error) {
      this._showError(error);
      return;
    }
    const asked = this.state;
    try {
      const preview = await this._options.client.previewSchedule(query);
      if (this.state === asked) {
        this.preview = preview;
        this.update();
      }
    } catch (error) {
      if (this.state === asked) {
        this.preview = null;
        this._showError(error);
      }
    }
  }

  /** Send the request; on success `onDone` is called, else the error shows by its field. */
  async submit(): Promise<void> {
    if (this.busy) {
      return;
    }
    let request: ReturnType<typeof buildRequest>;
    try {
      request = buildRequest(this.state);
    } catch (error) {
      this._showError(error);
      return;
    }
    this.busy = true;
    this.update();
    const { client } = this._options;
    try {
      const schedule = this._options.schedule;
      if (request.kind === 'job') {
        const job = await client.submitNotebook(request.body);
        this._options.onDone({ kind: 'job', job });
      } else if (schedule) {
        const { target, ...rest } = request.body;
        const changed = await client.updateSchedule(schedule.id, {
          ...rest,
          target: { ...target, path: schedule.target.path }
        });
        this._options.onDone({ kind: 'schedule', schedule: changed });
      } else {
        const created = await client.createSchedule(request.body);
        this._options.onDone({ kind: 'schedule', schedule: created });
      }
    } catch (error) {
      this._showError(error);
    } finally {
      this.busy = false;
      this.update();
    }
  }

  dispose(): void {
    if (this._timer !== null) {
      clearTimeout(this._timer);
    }
    super.dispose();
  }

  protected render(): JSX.Element {
    return (
      <RunFormView
        form={this}
        trans={this._trans}
        kernels={this._options.kernels}
        timezones={this._timezones}
        editing={!!this._options.schedule}
      />
    );
  }

  private _schedulePreview(): void {
    if (this._timer !== null) {
      clearTimeout(this._timer);
    }
    this._timer = setTimeout(() => {
      this._timer = null;
      void this.refreshPreview();
    }, this._options.previewDelay ?? 300);
  }

  private _showError(error: unknown): void {
    const message = error instanceof Error ? error.message : String(error);
    const field =
      error instanceof FieldError
        ? error.field
        : errorField(message, this.state);
    this.errors = { [field]: message };
    this.update();
  }

  private _options: IRunFormOptions;
  private _trans: TranslationBundle;
  private _timezones: string[];
  private _timer: ReturnType<typeof setTimeout> | null = null;
}

function FieldMessage(props: {
  form: RunForm;
  field: string;
}): JSX.Element | null {
  const message = props.form.errors[props.field];
  return message ? (
    <div className="jp-JobsRunForm-error" role="alert" data-field={props.field}>
      {message}
    </div>
  ) : null;
}

/** The fields of the form that hold one text value (a control each). */
type TextField = {
  [K in keyof IRunFormState]: IRunFormState[K] extends string ? K : never;
}[keyof IRunFormState];

/** An onChange that sets one field of the form to the control's value. */
function setter(form: RunForm, field: TextField) {
  return (event: React.ChangeEvent<HTMLInputElement | HTMLSelectElement>) =>
    form.set({ [field]: event.target.value });
}

/**
 * One row of the form: its caption, its control, and the error for its field. The control is a
 * text input bound to the field (with `input`'s attributes) unless children are given; a row
 * that only shows its value (`shown`) is no label, having no control to name.
 */
function Field(props: {
  form: RunForm;
  field: TextField;
  label: string;
  input?: React.InputHTMLAttributes<HTMLInputElement>;
  shown?: boolean;
  children?: React.ReactNode;
}): JSX.Element {
  const { form, field } = props;
  const Row = props.shown ? 'div' : 'label';
  return (
    <Row className="jp-JobsRunForm-field">
      <span>{props.label}</span>
      {props.children ?? (
        <input
          className="jp-mod-styled"
          name={field}
          value={form.state[field]}
          onChange={setter(form, field)}
          {...props.input}
        />
      )}
      <FieldMessage form={form} field={field} />
    </Row>
  );
}

function RunFormView(props: {
  form: RunForm;
  trans: TranslationBundle;
  kernels: { name: string; display: string }[];
  timezones: string[];
  editing: boolean;
}): JSX.Element {
  const { form, trans } = props;
  const state = form.state;
  const setRow = (index: number, fields: Partial<IParameterRow>) =>
    form.set({
      parameters: state.parameters.map((row, i) =>
        i === index ? { ...row, ...fields } : row
      )
    });
  return (
    <form
      className="jp-JobsRunForm-form"
      onSubmit={event => {
        event.preventDefault();
        void form.submit();
      }}
    >
      <Field form={form} field="path" label={trans.__('Notebook')} shown>
        <code className="jp-JobsRunForm-path">{state.path}</code>
      </Field>
      <fieldset className="jp-JobsRunForm-parameters">
        <legend>{trans.__('Parameters')}</legend>
        {state.parameters.map((row, index) => (
          <div className="jp-JobsRunForm-parameter" key={index}>
            <input
              className="jp-mod-styled"
              name={`parameter-name-${index}`}
              aria-label={trans.__('Parameter name')}
              placeholder={trans.__('name')}
              value={row.name}
              onChange={event => setRow(index, { name: event.target.value })}
            />
            <input
              className="jp-mod-styled"
              name={`parameter-value-${index}`}
              aria-label={trans.__('Parameter value (JSON or text)')}
              placeholder={trans.__('value (JSON or text)')}
              value={row.value}
              onChange={event => setRow(index, { value: event.target.value })}
            />
            <button
              type="button"
              className="jp-mod-styled"
              aria-label={trans.__('Remove parameter')}
              onClick={() =>
                form.set({
                  parameters: state.parameters.filter((_, i) => i !== index)
                })
              }
            >
              ×
            </button>
            <FieldMessage form={form} field={`parameter:${index}`} />
          </div>
        ))}
        <button
          type="button"
          className="jp-mod-styled jp-JobsRunForm-addParameter"
          onClick={() =>
            form.set({
              parameters: [...state.parameters, { name: '', value: '' }]
            })
          }
        >
          {trans.__('Add parameter')}
        </button>
        <FieldMessage form={form} field="parameters" />
      </fieldset>
      <div className="jp-JobsRunForm-row">
        <Field form={form} field="kernel" label={trans.__('Kernel')}>
          <select
            className="jp-mod-styled"
            name="kernel"
            value={state.kernel}
            onChange={setter(form, 'kernel')}
          >
            <option value="">{trans.__("The notebook's kernel")}</option>
            {props.kernels.map(kernel => (
              <option key={kernel.name} value={kernel.name}>
                {kernel.display}
              </option>
            ))}
          </select>
        </Field>
        <Field form={form} field="name" label={trans.__('Name')} />
      </div>
      <div className="jp-JobsRunForm-row">
        <Field
          form={form}
          field="priority"
          label={trans.__('Priority')}
          input={{ type: 'number' }}
        />
        <Field
          form={form}
          field="timeout"
          label={trans.__('Timeout (s)')}
          input={{ type: 'number', min: '1', placeholder: trans.__('none') }}
        />
        <Field
          form={form}
          field="retries"
          label={trans.__('Retries')}
          input={{ type: 'number', min: '0' }}
        />
      </div>
      {!props.editing && (
        <div className="jp-JobsRunForm-mode" role="radiogroup">
          <label>
            <input
              type="radio"
              name="mode"
              value="now"
              checked={state.mode === 'now'}
              onChange={() => form.set({ mode: 'now' })}
            />
            {trans.__('Run now')}
          </label>
          <label>
            <input
              type="radio"
              name="mode"
              value="schedule"
              checked={state.mode === 'schedule'}
              onChange={() => form.set({ mode: 'schedule' })}
            />
            {trans.__('On a schedule')}
          </label>
        </div>
      )}
      {state.mode === 'schedule' && (
        <ScheduleFields form={form} trans={trans} timezones={props.timezones} />
      )}
      <FieldMessage form={form} field="" />
      <div className="jp-JobsRunForm-actions">
        <button
          type="submit"
          className="jp-mod-styled jp-mod-accept jp-JobsRunForm-submit"
          disabled={form.busy}
        >
          {props.editing
            ? trans.__('Save schedule')
            : state.mode === 'now'
              ? trans.__('Run')
              : trans.__('Create schedule')}
        </button>
      </div>
    </form>
  );
}

function ScheduleFields(props: {
  form: RunForm;
  trans: TranslationBundle;
  timezones: string[];
}): JSX.Element {
  const { form, trans } = props;
  const state = form.state;
  const presets: [Preset, string][] = [
    ['hourly', trans.__('Hourly')],
    ['daily', trans.__('Daily at')],
    ['weekdays', trans.__('Weekdays at')],
    ['cron', trans.__('Custom (cron)')],
    ['every', trans.__('Every N minutes')]
  ];
  return (
    <fieldset className="jp-JobsRunForm-schedule">
      <legend>{trans.__('Schedule')}</legend>
      <Field form={form} field="preset" label={trans.__('Repeat')}>
        <select
          className="jp-mod-styled"
          name="preset"
          value={state.preset}
          onChange={setter(form, 'preset')}
        >
          {presets.map(([value, text]) => (
            <option key={value} value={value}>
              {text}
            </option>
          ))}
        </select>
      </Field>
      {(state.preset === 'daily' || state.preset === 'weekdays') && (
        <Field
          form={form}
          field="time"
          label={trans.__('Time (HH:MM)')}
          input={{ type: 'time' }}
        />
      )}
      {state.preset === 'cron' && (
        <Field
          form={form}
          field="cron"
          label={trans.__('Cron expression')}
          input={{ placeholder: '0 8 * * 1-5' }}
        />
      )}
      {state.preset === 'every' ? (
        <Field
          form={form}
          field="minutes"
          label={trans.__('Every (minutes)')}
          input={{ type: 'number', min: '1' }}
        />
      ) : (
        <Field form={form} field="timezone" label={trans.__('Time zone')}>
          <select
            className="jp-mod-styled"
            name="timezone"
            value={state.timezone}
            onChange={setter(form, 'timezone')}
          >
            {props.timezones.map(zone => (
              <option key={zone} value={zone}>
                {zone}
              </option>
            ))}
          </select>
        </Field>
      )}
      {form.preview && (
        <div className="jp-JobsRunForm-preview" aria-live="polite">
          <div className="jp-JobsRunForm-description">
            {form.preview.description}
          </div>
          <ol
            className="jp-JobsRunForm-next"
            aria-label={trans.__('Next runs')}
          >
            {form.preview.next.slice(0, 3).map(time => (
              <li key={time}>{formatTime(time)}</li>
            ))}
          </ol>
        </div>
      )}
    </fieldset>
  );
}

/**
 * Show the dialog for a notebook (or a schedule to edit); resolves with what was created, or
 * null when the user closed it.
 */
export async function showRunDialog(
  path: string,
  options: Omit<IRunFormOptions, 'onDone'>
): Promise<IRunResult | null> {
  const trans = (options.translator ?? nullTranslator).load('jupyter_jobs');
  let result: IRunResult | null = null;
  // The form submits itself (a 400 keeps the dialog open); the dialog only offers Cancel.
  const dialog: Dialog<unknown> = new Dialog({
    title: options.schedule
      ? trans.__('Edit schedule “%1”', options.schedule.name)
      : trans.__('Run as job'),
    body: new RunForm(path, {
      ...options,
      onDone: done => {
        result = done;
        dialog.resolve(0);
      }
    }),
    buttons: [Dialog.cancelButton({ label: trans.__('Close') })],
    focusNodeSelector: 'input[name="name"]'
  });
  dialog.addClass('jp-JobsRunDialog');
  await dialog.launch();
  return result;
}
