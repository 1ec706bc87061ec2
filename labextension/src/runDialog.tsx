/**
 * The "Run as job…" dialog: a notebook with parameters, or a job type with its parameters (once
 * the server knows job types), run now as a job or on a schedule.
 *
 * The form checks what it can (JSON values, numbers, a job type's parameters against its
 * schema) and leaves the rest to the server: a 400's message is shown beside the field it
 * names (a job type's parameters beside their fields in the form generated from its schema,
 * typeForm.tsx), and the dialog stays open. The same form edits a schedule (PATCH) from the
 * Schedules view.
 */

import { Dialog, ReactWidget } from '@jupyterlab/apputils';
import {
  ITranslator,
  nullTranslator,
  TranslationBundle
} from '@jupyterlab/translation';
import type { ReadonlyJSONObject } from '@lumino/coreutils';
import * as React from 'react';

import { errorDetail, JobsClient } from './client';
import { formatTime } from './format';
import type {
  IJobOptions,
  INotebookJobRequest,
  IPreviewQuery,
  ISchedule,
  IScheduleSpec,
  ISchedulePreview,
  JSONValue
} from './nbtypes';
import { TypedParameters, TypedParametersFields } from './typeForm';
import type { IJob, ITypedSubmit } from './types';

/**
 * The parameter each run of a schedule receives (its time, ISO 8601 in the schedule's zone)
 * when its notebook or its job type declares it (`schedules.SCHEDULED_TIME`): a schedule's
 * job-type form does not ask for it.
 */
export const SCHEDULED_TIME = 'scheduled_time';

/** What the dialog runs: a notebook, or a job of a job type. */
export type Target = 'notebook' | 'typed';

/** A job type and its parameters, as the job-type form holds them. */
export interface ITypedTarget {
  type: string;
  parameters: ReadonlyJSONObject;
}

/** How often a schedule fires, as the dialog offers it. */
export type Preset = 'hourly' | 'daily' | 'weekdays' | 'cron' | 'every';

/** One parameter row: a name and its value as typed. */
export interface IParameterRow {
  name: string;
  value: string;
}

/**
 * Everything the form holds, but a job type's parameters (`TypedParameters`). Numbers stay
 * text until the request is built.
 */
export interface IRunFormState {
  target: Target;
  /** The notebook ('' for none: then only a job type can be run). */
  path: string;
  name: string;
  parameters: IParameterRow[];
  /** '' for the notebook's own kernel. */
  kernel: string;
  priority: string;
  /** Seconds; '' for none. */
  timeout: string;
  retries: string;
  /** The result channel of the job (of each run); '' for none. */
  channel: string;
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

/** The name a notebook's job takes unless told otherwise. */
function notebookName(path: string): string {
  return (path.split('/').pop() ?? path).replace(/\.ipynb$/, '');
}

/** A fresh form for a notebook, or for a job type when there is no notebook (`path` ''). */
export function initialState(
  path: string,
  mode: IRunFormState['mode'] = 'now'
): IRunFormState {
  return {
    target: path ? 'notebook' : 'typed',
    path,
    name: notebookName(path),
    parameters: [],
    kernel: '',
    priority: '0',
    timeout: '',
    retries: '0',
    channel: '',
    mode,
    preset: 'daily',
    time: '08:00',
    cron: '0 8 * * *',
    minutes: '60',
    timezone: browserTimezone()
  };
}

/**
 * The form filled from a schedule, to edit it (a job type's parameters go to its
 * `TypedParameters`).
 */
export function stateFromSchedule(schedule: ISchedule): IRunFormState {
  const state = initialState(schedule.target.path ?? '');
  const job = schedule.job ?? {};
  return {
    ...state,
    target: schedule.target.kind === 'typed' ? 'typed' : 'notebook',
    name: schedule.name,
    parameters:
      schedule.target.kind === 'typed'
        ? []
        : Object.entries(schedule.target.parameters ?? {}).map(
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
    channel: typeof job.channel === 'string' ? job.channel : '',
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

/** What the form asks of the server: a notebook job, a job of a job type, or a schedule. */
export type RunRequest =
  | { kind: 'job'; body: INotebookJobRequest }
  | { kind: 'typed'; body: ITypedSubmit }
  | { kind: 'schedule'; body: IScheduleSpec };

/**
 * The request the form stands for: a job now, or a schedule, of the notebook or of the job
 * type `typed` (the job-type form's, checked there). Throws a FieldError.
 */
export function buildRequest(
  state: IRunFormState,
  typed: ITypedTarget | null = null
): RunRequest {
  const timeout = state.timeout.trim() ? Number(state.timeout) : null;
  if (timeout !== null && !(timeout > 0)) {
    throw new FieldError('timeout', 'Timeout: a number of seconds above 0');
  }
  const job: IJobOptions = {
    priority: integer(state, 'priority'),
    timeout,
    retries: integer(state, 'retries')
  };
  if (state.channel.trim()) {
    job.channel = state.channel.trim();
  }
  const name = state.name.trim() || undefined;
  let target: IScheduleSpec['target'];
  if (state.target === 'typed') {
    if (!typed?.type) {
      throw new FieldError('type', 'Choose a job type');
    }
    const parameters = { ...typed.parameters } as Record<string, JSONValue>;
    if (state.mode === 'now') {
      return {
        kind: 'typed',
        body: { type: typed.type, parameters, spec: { name, ...job } }
      };
    }
    target = { kind: 'typed', type: typed.type, parameters };
  } else {
    const parameters = parametersOf(state);
    const kernel_name = state.kernel || null;
    if (state.mode === 'now') {
      return {
        kind: 'job',
        body: {
          spec: { kind: 'notebook', name, ...job },
          notebook: { path: state.path, parameters, kernel_name }
        }
      };
    }
    target = { kind: 'notebook', path: state.path, parameters, kernel_name };
  }
  const cron = presetCron(state);
  return {
    kind: 'schedule',
    body: {
      name: name ?? (state.target === 'typed' ? '' : state.path),
      target,
      cron,
      every: cron === null ? everySeconds(state) : null,
      timezone: cron === null ? null : state.timezone || null,
      job
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
    ['channel', 'channel'],
    ['param', 'parameters'],
    ['job type', 'type'],
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
  /** Whether the form starts on "Run now" or "On a schedule" (default: now). */
  mode?: IRunFormState['mode'];
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
    const schedule = options.schedule;
    this.state = schedule
      ? stateFromSchedule(schedule)
      : initialState(path, options.mode);
    if (schedule?.target.kind === 'typed') {
      this.typed.chosen = schedule.target.type ?? '';
      this.typed.parameters = (schedule.target.parameters ??
        {}) as ReadonlyJSONObject;
    }
    this._omitScheduledTime();
    const zones = options.timezones ?? allTimezones();
    this._timezones = zones.includes(this.state.timezone)
      ? zones
      : [this.state.timezone, ...zones];
  }

  /** The form's values. */
  state: IRunFormState;

  /** The job types the server knows, the one chosen and its parameters. */
  readonly typed = new TypedParameters();

  /** Errors by field ('' for the whole form). */
  errors: Record<string, string> = {};

  /** The last preview, or null. */
  preview: ISchedulePreview | null = null;

  /** Whether a request is on its way. */
  busy = false;

  /** Whether the job types have been read (`load`). */
  get typesLoaded(): boolean {
    return this.typed.types !== null;
  }

  /** Whether the form can run a job type: the server knows some. */
  get offersTypes(): boolean {
    return !!this.typed.types?.length;
  }

  /**
   * Read the job types (`GET /jobs/api/types`): the form offers a job type as its target once
   * the server knows one. A schedule's preview is asked for too, when the form starts on one.
   */
  async load(): Promise<void> {
    await this.typed.load(this._options.client);
    this.update();
    if (this.state.mode === 'schedule') {
      this._schedulePreview();
    }
  }

  /** Change some fields. */
  set(fields: Partial<IRunFormState>): void {
    this.state = { ...this.state, ...fields };
    this.errors = {};
    this._omitScheduledTime();
    this.update();
    if (this.state.mode === 'schedule') {
      this._schedulePreview();
    }
  }

  /**
   * Run a notebook or a job type: a job's name that was the notebook's becomes the type's
   * (left empty), and back.
   */
  setTarget(target: Target): void {
    const own = notebookName(this.state.path);
    const name =
      target === 'typed' && this.state.name === own
        ? ''
        : target === 'notebook' && !this.state.name
          ? own
          : this.state.name;
    this.set({ target, name });
  }

  /** Another job type was chosen: its form shows, without the last errors. */
  typeChosen(): void {
    this.errors = {};
    this.update();
  }

  /** Ask the server for the plain words and the next three runs of the timing. */
  async refreshPreview(): Promise<void> {
    let query: IPreviewQuery;
    try {
      query = previewQuery(this.state);
    } catch (error) {
      await this._showError(error);
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
        await this._showError(error);
      }
    }
  }

  /** Send the request; on success `onDone` is called, else the error shows by its field. */
  async submit(): Promise<void> {
    if (this.busy) {
      return;
    }
    let request: RunRequest;
    try {
      request = buildRequest(this.state, this._typedTarget());
    } catch (error) {
      await this._showError(error);
      return;
    }
    this.busy = true;
    this.errors = {};
    this.update();
    const { client } = this._options;
    try {
      const schedule = this._options.schedule;
      if (request.kind === 'job') {
        const job = await client.submitNotebook(request.body);
        this._options.onDone({ kind: 'job', job });
      } else if (request.kind === 'typed') {
        const job = await client.submitTyped(request.body);
        this._options.onDone({ kind: 'job', job });
      } else if (schedule) {
        const { target, ...rest } = request.body;
        const changed = await client.updateSchedule(schedule.id, {
          ...rest,
          target:
            target.kind === 'notebook'
              ? { ...target, path: schedule.target.path }
              : target
        });
        this._options.onDone({ kind: 'schedule', schedule: changed });
      } else {
        const created = await client.createSchedule(request.body);
        this._options.onDone({ kind: 'schedule', schedule: created });
      }
    } catch (error) {
      await this._showError(error, this.state.target === 'typed');
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

  /**
   * The job type and its parameters, checked against its schema (a FieldError naming the
   * parameters, marked by their fields, when they fail); null for a notebook.
   */
  private _typedTarget(): ITypedTarget | null {
    if (this.state.target !== 'typed' || !this.typed.type) {
      return null;
    }
    if (!this.typed.check()) {
      throw new FieldError(
        'parameters',
        this._trans.__('Check the parameters marked below.')
      );
    }
    return { type: this.typed.chosen, parameters: this.typed.values() };
  }

  /** A schedule's runs get `scheduled_time` themselves: its form does not ask for it. */
  private _omitScheduledTime(): void {
    this.typed.omitted = this.state.mode === 'schedule' ? [SCHEDULED_TIME] : [];
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

  /**
   * Show an error by the field it names. With `typed` (the answer to a job type's request), a
   * server error naming its parameters (its `detail`) marks them in the generated form, its
   * message below it.
   */
  private async _showError(error: unknown, typed = false): Promise<void> {
    const message = error instanceof Error ? error.message : String(error);
    let field =
      error instanceof FieldError
        ? error.field
        : errorField(message, this.state);
    if (typed && !(error instanceof FieldError)) {
      if (this.typed.showServerErrors(await errorDetail(error))) {
        field = 'parameters';
      }
    }
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
  if (!state.path && !form.offersTypes) {
    return (
      <div className="jp-JobsRunForm-form">
        {form.typesLoaded ? (
          <div className="jp-JobDetail-muted">
            {form.typed.loadError ||
              trans.__(
                'Open a notebook (or select one in the file browser) to run it as a job, or install or register a job type to run one.'
              )}
          </div>
        ) : (
          <div className="jp-JobDetail-muted">{trans.__('Loading…')}</div>
        )}
      </div>
    );
  }
  const typed = state.target === 'typed';
  return (
    // No validation by the browser: the form checks what it sends, and the generated form
    // (a div inside this form) marks its own fields.
    <form
      className="jp-JobsRunForm-form"
      noValidate
      onSubmit={event => {
        event.preventDefault();
        void form.submit();
      }}
    >
      {!props.editing && form.offersTypes && (
        <TargetChoice form={form} trans={trans} />
      )}
      {typed ? (
        <TypedTargetFields form={form} trans={trans} />
      ) : (
        <NotebookFields form={form} trans={trans} kernels={props.kernels} />
      )}
      <div className="jp-JobsRunForm-row">
        <Field
          form={form}
          field="name"
          label={trans.__('Name')}
          input={typed ? { placeholder: form.typed.chosen } : undefined}
        />
        <Field
          form={form}
          field="channel"
          label={trans.__('Result channel')}
          input={{ placeholder: trans.__('none') }}
        />
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
          disabled={form.busy || (typed && !form.typed.type)}
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

/** What to run: the notebook, or a job type (offered once the server knows one). */
function TargetChoice(props: {
  form: RunForm;
  trans: TranslationBundle;
}): JSX.Element {
  const { form, trans } = props;
  const state = form.state;
  return (
    <div
      className="jp-JobsRunForm-mode jp-JobsRunForm-target"
      role="radiogroup"
      aria-label={trans.__('What to run')}
    >
      <label
        title={
          state.path ? state.path : trans.__('Open or select a notebook first')
        }
      >
        <input
          type="radio"
          name="target"
          value="notebook"
          checked={state.target === 'notebook'}
          disabled={!state.path}
          onChange={() => form.setTarget('notebook')}
        />
        {trans.__('Notebook')}
      </label>
      <label>
        <input
          type="radio"
          name="target"
          value="typed"
          checked={state.target === 'typed'}
          onChange={() => form.setTarget('typed')}
        />
        {trans.__('Job type')}
      </label>
    </div>
  );
}

/** The notebook, its parameters (names and JSON or text values) and its kernel. */
function NotebookFields(props: {
  form: RunForm;
  trans: TranslationBundle;
  kernels: { name: string; display: string }[];
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
    <>
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
    </>
  );
}

/**
 * The job type and its parameters, in the form generated from its schema; on a schedule,
 * without `scheduled_time`, which each run receives.
 */
function TypedTargetFields(props: {
  form: RunForm;
  trans: TranslationBundle;
}): JSX.Element {
  const { form, trans } = props;
  const model = form.typed;
  return (
    <div className="jp-JobsRunForm-typed">
      {model.types === null ? (
        <div className="jp-JobDetail-muted">{trans.__('Loading…')}</div>
      ) : (
        <TypedParametersFields
          model={model}
          trans={trans}
          changed={() => form.typeChosen()}
          idPrefix="jp-JobsRunForm-type"
        />
      )}
      <FieldMessage form={form} field="type" />
      {model.omitted.some(name => model.declares(name)) && (
        <div className="jp-JobDetail-muted jp-JobsRunForm-scheduledTime">
          {trans.__(
            '%1: each run receives its own time (ISO 8601, in the schedule’s time zone).',
            SCHEDULED_TIME
          )}
        </div>
      )}
      <FieldMessage form={form} field="parameters" />
    </div>
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
 * Show the dialog for a notebook (`path` '' for none: then a job type), or for a schedule to
 * edit; resolves with what was created, or null when the user closed it.
 */
export async function showRunDialog(
  path: string,
  options: Omit<IRunFormOptions, 'onDone'>
): Promise<IRunResult | null> {
  const trans = (options.translator ?? nullTranslator).load('jupyter_jobs');
  let result: IRunResult | null = null;
  const body = new RunForm(path, {
    ...options,
    onDone: done => {
      result = done;
      dialog.resolve(0);
    }
  });
  // The form submits itself (a 400 keeps the dialog open); the dialog only offers Cancel.
  const dialog: Dialog<unknown> = new Dialog({
    title: options.schedule
      ? trans.__('Edit schedule “%1”', options.schedule.name)
      : options.mode === 'schedule'
        ? trans.__('New schedule')
        : trans.__('Run as job'),
    body,
    buttons: [Dialog.cancelButton({ label: trans.__('Close') })],
    focusNodeSelector: 'input[name="name"]'
  });
  dialog.addClass('jp-JobsRunDialog');
  void body.load();
  await dialog.launch();
  return result;
}
