/**
 * The "New job" dialog: pick a job type, fill in its parameters in a form generated from the
 * type's JSON schema (typeForm.tsx), and start the job.
 *
 * The parameters are checked before anything is sent; the server checks them again, and a
 * 400 naming parameters shows beside their fields while the dialog stays open.
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
import { TypedParameters, TypedParametersFields } from './typeForm';
import type { IJob, ITypedSubmit } from './types';

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

  /** The types, the chosen one and its parameters. */
  readonly typed = new TypedParameters();
  /** The job's name ('' for the type's). */
  name = '';
  /** What went wrong with the last request. */
  error = '';
  /** Whether a request is on its way. */
  busy = false;

  /** Read the job types; the first that can run is chosen. */
  async load(): Promise<void> {
    await this.typed.load(this._options.client);
    this.error = this.typed.loadError;
    this.update();
  }

  /** Another type was chosen: its form shows, without the last error. */
  typeChosen(): void {
    this.error = '';
    this.update();
  }

  /** Start the job; on success `onDone`, else the errors show by their fields. */
  async submit(): Promise<void> {
    const type = this.typed.type;
    if (this.busy || !type) {
      return;
    }
    if (!this.typed.check()) {
      this.error = this._trans.__('Check the parameters marked below.');
      this.update();
      return;
    }
    this.busy = true;
    this.error = '';
    this.update();
    try {
      const request = typedRequest(type.name, this.typed.values(), this.name);
      this._options.onDone(await this._options.client.submitTyped(request));
    } catch (error) {
      this.error = (error as Error).message;
      this.typed.showServerErrors(await errorDetail(error));
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
  const types = form.typed.types;
  if (types === null) {
    return <div className="jp-JobDetail-muted">{trans.__('Loading…')}</div>;
  }
  if (!types.length) {
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
  return (
    <div className="jp-JobsRunForm-form">
      <TypedParametersFields
        model={form.typed}
        trans={trans}
        changed={() => form.typeChosen()}
        idPrefix="jp-JobsTypeForm"
      />
      <label className="jp-JobsRunForm-field">
        <span>{trans.__('Job name')}</span>
        <input
          className="jp-mod-styled"
          name="name"
          placeholder={form.typed.chosen}
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
          disabled={form.busy || !form.typed.type}
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
