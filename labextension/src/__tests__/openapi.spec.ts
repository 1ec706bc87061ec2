/**
 * What is not generated from the server's descriptions, checked against them: the test fakes
 * and the status order against `openapi.yaml` (the REST types themselves are generated from it,
 * `npm run build:types`), and the hand-written event type against `events/job.yaml`.
 */

import * as fs from 'fs';
import * as path from 'path';

import * as yaml from 'js-yaml';

import { ACTIONS, EVENT_SCHEMA_ID, STATUSES } from '../types';
import { makeEvent, makeJob } from './fakes';

const SERVER = path.resolve(__dirname, '../../../jupyter_jobs/server');

function load(file: string): any {
  return yaml.load(fs.readFileSync(path.join(SERVER, file), 'utf8'));
}

const openapi = load('openapi.yaml');
const schemas = openapi.components.schemas;

const sorted = (keys: Iterable<string>) => [...keys].sort();

/** The names of an operation's query and path parameters, `$ref`s followed. */
function parameterNames(operation: any): string[] {
  return operation.parameters.map((p: any) =>
    p.$ref
      ? openapi.components.parameters[p.$ref.split('/').pop()].name
      : p.name
  );
}

describe('types.ts and the fakes match openapi.yaml', () => {
  it('builds fake jobs with every Job field, and no other', () => {
    expect(sorted(Object.keys(makeJob(1)))).toEqual(
      sorted(Object.keys(schemas.Job.properties))
    );
    expect(sorted(schemas.Job.required)).toEqual(
      sorted(Object.keys(schemas.Job.properties))
    );
  });

  it('knows every status in the order of a job life, and every action', () => {
    expect(STATUSES).toEqual(schemas.Status.enum);
    expect(ACTIONS).toEqual(schemas.Action.enum);
  });

  it('reads the listing, log and stats fields the server promises', () => {
    expect(sorted(schemas.JobList.required)).toEqual([
      'counts',
      'jobs',
      'next_cursor'
    ]);
    expect(sorted(schemas.LogChunk.required)).toEqual([
      'data',
      'next_offset',
      'offset',
      'parts',
      'size',
      'stream',
      'streams'
    ]);
    expect(sorted(schemas.Error.required)).toEqual([
      'detail',
      'message',
      'reason',
      'type'
    ]);
    expect(sorted(schemas.Stats.required)).toEqual([
      'counts',
      'db_size',
      'executor',
      'max_workers',
      'pending',
      'queued',
      'running',
      'workspace_bytes'
    ]);
    expect(sorted(schemas.StatusList.required)).toEqual(['jobs', 'missing']);
    expect(sorted(schemas.Worker.required)).toEqual(
      sorted(Object.keys(schemas.Worker.properties))
    );
  });

  it('uses the paths and verbs the client calls', () => {
    const verbs = Object.fromEntries(
      Object.entries(openapi.paths).map(([p, item]: [string, any]) => [
        p,
        sorted(Object.keys(item).filter(k => k !== 'parameters'))
      ])
    );
    expect(verbs['/jobs/api/jobs']).toEqual(expect.arrayContaining(['get']));
    expect(verbs['/jobs/api/jobs/{id}']).toEqual(['delete', 'get']);
    expect(verbs['/jobs/api/jobs/{id}/cancel']).toEqual(['post']);
    expect(verbs['/jobs/api/jobs/{id}/retry']).toEqual(['post']);
    expect(verbs['/jobs/api/jobs/{id}/release']).toEqual(['post']);
    expect(verbs['/jobs/api/jobs/{id}/logs']).toEqual(['get']);
    expect(verbs['/jobs/api/jobs/{id}/outputs']).toEqual(['get']);
    expect(verbs['/jobs/api/status']).toEqual(['get']);
    expect(verbs['/jobs/api/stats']).toEqual(['get']);
    expect(verbs['/jobs/api/workers']).toEqual(['get']);
    expect(verbs['/jobs/api/workers/{worker_id}/drain']).toEqual(['post']);
    const list = parameterNames(openapi.paths['/jobs/api/jobs'].get);
    expect(sorted(list)).toEqual([
      'cursor',
      'limit',
      'mine',
      'owner',
      'q',
      'schedule',
      'status',
      'type',
      'user'
    ]);
    const stats = parameterNames(openapi.paths['/jobs/api/stats'].get);
    expect(sorted(stats)).toEqual(['mine', 'type', 'user']);
    const logs = parameterNames(openapi.paths['/jobs/api/jobs/{id}/logs'].get);
    expect(sorted(logs)).toEqual(['limit', 'offset', 'stream']);
  });
});

describe('types.ts matches events/job.yaml', () => {
  const schema = load('events/job.yaml');

  it('has the schema id the server emits', () => {
    expect(schema.$id).toBe(EVENT_SCHEMA_ID);
  });

  it('has every field of an entry, and no other', () => {
    expect(schema.required).toEqual(['jobs']);
    const entry = schema.properties.jobs.items;
    expect(sorted(Object.keys(makeEvent(1)))).toEqual(sorted(entry.required));
    expect(sorted(Object.keys(entry.properties))).toEqual(
      sorted(entry.required)
    );
    expect(sorted(entry.properties.action.enum)).toEqual(
      sorted([
        'created',
        'transition',
        'progress',
        'cancel_requested',
        'released',
        'deleted'
      ])
    );
    expect(entry.properties.actions.items.enum).toEqual(ACTIONS);
  });
});
