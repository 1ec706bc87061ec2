/**
 * The "New job" dialog: pick a job type, fill in its parameters in a form generated from the
 * type's JSON schema, and start the job.
 *
 * The form is JupyterLab's own `FormComponent` (React JSON Schema Form, as the settings editor
 * uses), validating with ajv as the user types. The server checks the parameters again with
 * `jsonschema`; a 400 names each bad parameter by its path (`parameters.epochs`), which the
 * form shows beside that field, and the dialog stays open. Loaded on first use (ajv included).
 */

import { Dialog, ReactWidget } from '@jupyterlab/apputils';
import {
  ITranslator,
  nullTranslator,
  TranslationBundle
} from '@jupyterlab/translation';
import { FormComponent } from '@jupyterlab/ui-components';
import type { ReadonlyJSONObject } from '@lumino/coreutils';
import { getDefaultFormState } from '@rjsf/utils';
import type { ErrorSchema, RJSFSchema } from '@rjsf/utils';
// eslint-disable-next-line jupyter/prefer-lazy-imports -- this module is itself loaded with import()
import { customizeValidator } from '@rjsf/validator-ajv8';
import * as React from 'react';

import { errorDetail, JobsClient } from './client';
import type { IJob, IJobType, ITypedSubmit } from './types';

/** ajv (draft 7, with formats), for the form and the check before a submit. */
const validator = customizeValidator<ReadonlyJSONObject>();

/** The paths the server names bad parameters by (`parameters.data.path`), as rjsf's errors. */
export function errorSchemaOf(detail: unknown): ErrorSchema {
  const problems =
    detail && typeof detail === 'object'
      ? (detail as { parameters?: unknown }).parameters
      : null;
  const schema: ErrorSchema = {};
  if (!problems || typeof problems !== 'object') {
    return schema;
  }
  for (const [path, why] of Object.entries(problems)) {
    const keys = path
      .replace(/^parameters/, '')
      .split(/\.|\[|\]/)
      .filter(key => key !== '')
      .map(key => key.replace(/^"(.*)"$/, '$1'));
    let node = schema as Record<string, any>;
    for (const key of keys) {
      node = node[key] = node[key] ?? {};
    }
    node.__errors = [...(node.__errors ?? []), String(why)];
  }
  return schema;
}

/** The request that starts a job of `type` with `parameters` (and a name, if one is given). */
export function typedRequest(
  type: string,
  parameters: ReadonlyJSONObject,
  name: string
): ITypedSubmit {
  const request: ITypedSubmit = { type, parameters: { ...parameters } };
  if (name.trim()) {
    request.spec = { name: name.trim() };
  }
  return request;
}

/** Options of the dialog's body. */
export interface ITypedJobFormOptions {
  client: JobsClient;
  /** Called with the job the server created. */
  onDone: (job: IJob) => void;
  translator?: ITranslator;
}

/** The dialog's body: the type, the generated form, the job's name and the Run button. */
export class TypedJobForm extends ReactWidget {
  constructor(options: ITypedJobFormOptions) {
    super();
    this.addClass('jp-JobsTypeForm');
    this._options = options;
    this._trans = (options.translator ?? nullTranslator).load('jupyter_jobs');
  }

  /** The job types, once read (null before). */
  types: IJobType[] | null = null;
  /** The chosen type's name. */
  chosen = '';
  /** The parameters as filled in. */
  parameters: ReadonlyJSONObject = {};
  /** The job's name ('' for the type's). */
  name = '';
  /** What went wrong with the last request, and the parameters the server named. */
  error = '';
  extraErrors: ErrorSchema = {};
  /** Whether a request is on its way. */
  busy = false;

  /** Read the job types; the first that can run is chosen. */
  async load(): Promise<void> {
    try {
      this.types = await this._options.client.types();
      const usable = this.types.find(type => !type.error);
      this.choose(usable?.name ?? '');
    } catch (error) {
      this.types = [];
      this.error = (error as Error).message;
      this.update();
    }
  }

  /** Choose a type: its form starts from its schema's defaults (what the form shows). */
  choose(name: string): void {
    this.chosen = name;
    const type = this.type;
    const defaults = type
      ? getDefaultFormState(validator, type.schema as RJSFSchema, {})
      : {};
    // The schema is an object's (the server refuses others): so are its defaults.
    this.parameters = (defaults ?? {}) as ReadonlyJSONObject;
    this.error = '';
    this.extraErrors = {};
    this.update();
  }

  /** The chosen type, or null. */
  get type(): IJobType | null {
    return this.types?.find(type => type.name === this.chosen) ?? null;
  }

  /** Start the job; on success `onDone`, else the errors show by their fields. */
  async submit(): Promise<void> {
    const type = this.type;
    if (this.busy || !type) {
      return;
    }
    const checked = validator.validateFormData(
      this.parameters,
      type.schema as RJSFSchema
    );
    if (checked.errors.length) {
      this.error = this._trans.__('Check the parameters marked below.');
      this.extraErrors = checked.errorSchema as ErrorSchema;
      this.update();
      return;
    }
    this.busy = true;
    this.error = '';
    this.extraErrors = {};
    this.update();
    try {
      const request = typedRequest(type.name, this.parameters, this.name);
      this._options.onDone(await this._options.client.submitTyped(request));
    } catch (error) {
      this.error = (error as Error).message;
      this.extraErrors = errorSchemaOf(await errorDetail(error));
    } finally {
      this.busy = false;
      this.update();
    }
  }

  protected render(): JSX.Element {
    return <TypedJobView form={this} trans={this._trans} />;
  }

  private _options: ITypedJobFormOptions;
  private _trans: TranslationBundle;
}

function TypedJobView(props: {
  form: TypedJobForm;
  trans: TranslationBundle;
}): JSX.Element {
  const { form, trans } = props;
  if (form.types === null) {
    return <div className="jp-JobDetail-muted">{trans.__('Loading…')}</div>;
  }
  if (!form.types.length) {
    return (
      <div className="jp-JobsTypeForm-empty">
        {form.error ? (
          <div className="jp-JobsRunForm-error" role="alert">
            {form.error}
          </div>
        ) : (
          trans.__(
            'No job types yet. Install a package that declares some (entry points "jupyter_jobs.types"), or register one from a notebook with @jupyter_jobs.job_type.'
          )
        )}
      </div>
    );
  }
  const type = form.type;
  // A div, not a form: the generated form is one of its own (forms do not nest).
  return (
    <div className="jp-JobsRunForm-form">
      <label className="jp-JobsRunForm-field">
        <span>{trans.__('Job type')}</span>
        <select
          className="jp-mod-styled"
          name="type"
          value={form.chosen}
          onChange={event => form.choose(event.target.value)}
        >
          {form.types.map(t => (
            <option
              key={t.name}
              value={t.name}
              disabled={!!t.error}
              title={t.error ?? t.description}
            >
              {t.error ? trans.__('%1 (cannot be loaded)', t.name) : t.name}
            </option>
          ))}
        </select>
      </label>
      {type?.description && (
        <div className="jp-JobsTypeForm-description">{type.description}</div>
      )}
      {type && (
        <div className="jp-JobsTypeForm-parameters">
          <FormComponent
            key={type.name}
            schema={type.schema as RJSFSchema}
            formData={form.parameters}
            validator={validator}
            extraErrors={form.extraErrors}
            showErrorList={false}
            noHtml5Validate={true}
            idPrefix="jp-JobsTypeForm"
            onChange={event => {
              form.parameters = (event.formData ?? {}) as ReadonlyJSONObject;
            }}
          />
        </div>
      )}
      <label className="jp-JobsRunForm-field">
        <span>{trans.__('Job name')}</span>
        <input
          className="jp-mod-styled"
          name="name"
          placeholder={form.chosen}
          defaultValue={form.name}
          onChange={event => {
            form.name = event.target.value;
          }}
        />
      </label>
      {form.error && (
        <div className="jp-JobsRunForm-error" role="alert">
          {form.error}
        </div>
      )}
      <div className="jp-JobsRunForm-actions">
        <button
          type="button"
          className="jp-mod-styled jp-mod-accept jp-JobsTypeForm-submit"
          disabled={form.busy || !type}
          onClick={() => void form.submit()}
        >
          {trans.__('Run')}
        </button>
      </div>
    </div>
  );
}

/** Show the dialog; resolves with the job it started, or null when the user closed it. */
export async function showTypedJobDialog(
  options: Omit<ITypedJobFormOptions, 'onDone'>
): Promise<IJob | null> {
  const trans = (options.translator ?? nullTranslator).load('jupyter_jobs');
  let started: IJob | null = null;
  const body = new TypedJobForm({
    ...options,
    onDone: job => {
      started = job;
      dialog.resolve(0);
    }
  });
  // The form starts the job itself (a 400 keeps the dialog open); the dialog offers Close.
  const dialog: Dialog<unknown> = new Dialog({
    title: trans.__('New job'),
    body,
    buttons: [Dialog.cancelButton({ label: trans.__('Close') })],
    focusNodeSelector: 'select[name="type"]'
  });
  dialog.addClass('jp-JobsTypeDialog');
  void body.load();
  await dialog.launch();
  return started;
}
