/**
 * The TypeScript payload types against the server's own descriptions: `openapi.yaml` (REST) and
 * `events/job.yaml` (events). A field added or renamed on one side fails here.
 */

import * as fs from 'fs';
import * as path from 'path';

import * as yaml from 'js-yaml';

import { EVENT_SCHEMA_ID, STATUSES } from '../types';
import { makeEvent, makeJob } from './fakes';

const SERVER = path.resolve(__dirname, '../../../jupyter_jobs/server');

function load(file: string): any {
  return yaml.load(fs.readFileSync(path.join(SERVER, file), 'utf8'));
}

const openapi = load('openapi.yaml');
const schemas = openapi.components.schemas;

const sorted = (keys: Iterable<string>) => [...keys].sort();

describe('types.ts matches openapi.yaml', () => {
  it('has every Job field, and no other', () => {
    // makeJob builds a full IJob: the compiler makes it hold exactly the interface's keys.
    expect(sorted(Object.keys(makeJob(1)))).toEqual(
      sorted(Object.keys(schemas.Job.properties))
    );
  });

  it('knows every status', () => {
    expect(sorted(STATUSES)).toEqual(sorted(schemas.Status.enum));
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
      'size'
    ]);
    expect(sorted(schemas.Error.required)).toEqual(['detail', 'error', 'type']);
    const stats =
      openapi.paths['/jobs/api/stats'].get.responses['200'].content[
        'application/json'
      ].schema;
    expect(sorted(stats.required)).toEqual([
      'counts',
      'db_size',
      'executor',
      'max_workers',
      'queued',
      'running'
    ]);
    const status =
      openapi.paths['/jobs/api/status'].get.responses['200'].content[
        'application/json'
      ].schema;
    expect(sorted(status.required)).toEqual(['jobs', 'missing']);
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
    expect(verbs['/jobs/api/jobs/{id}/logs']).toEqual(['get']);
    expect(verbs['/jobs/api/jobs/{id}/outputs']).toEqual(['get']);
    expect(verbs['/jobs/api/status']).toEqual(['get']);
    expect(verbs['/jobs/api/stats']).toEqual(['get']);
    const list = openapi.paths['/jobs/api/jobs'].get.parameters.map(
      (p: any) => p.name
    );
    expect(sorted(list)).toEqual(['cursor', 'limit', 'owner', 'q', 'status']);
  });
});

describe('types.ts matches events/job.yaml', () => {
  const schema = load('events/job.yaml');

  it('has the schema id the server emits', () => {
    expect(schema.$id).toBe(EVENT_SCHEMA_ID);
  });

  it('has every event field, and no other', () => {
    expect(sorted(Object.keys(makeEvent(1)))).toEqual(sorted(schema.required));
    expect(sorted(Object.keys(schema.properties))).toEqual(
      sorted(schema.required)
    );
    expect(sorted(schema.properties.action.enum)).toEqual(
      sorted([
        'created',
        'transition',
        'progress',
        'cancel_requested',
        'deleted'
      ])
    );
  });
});
