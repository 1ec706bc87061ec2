import { JobIndex } from '../jobindex';

describe('JobIndex', () => {
  it('keeps ids newest first whatever order they come in', () => {
    const index = new JobIndex();
    index.addAll([30, 20, 10]); // a first page
    index.addAll([9, 8]); // an older page: one step
    index.add(31); // a new job: on top
    index.add(15); // between loaded ones: a move
    expect(index.newestFirst()).toEqual([31, 30, 20, 15, 10, 9, 8]);
    expect(index.moves).toBe(1);
    expect([index.newest, index.oldest, index.size]).toEqual([31, 8, 7]);
  });

  it('skips removed ids, brings them back in place, and sweeps them out', () => {
    const index = new JobIndex();
    index.addAll(Array.from({ length: 200 }, (_, i) => 200 - i));
    index.delete(100);
    expect(index.has(100)).toBe(false);
    index.add(100); // back to life where it was
    expect(index.moves).toBe(0);
    for (let id = 1; id <= 150; id++) {
      index.delete(id);
    }
    expect(index.size).toBe(50);
    expect(index.oldest).toBe(151);
    expect(index.dropOldest()).toBe(151);
    expect(index.newestFirst()).toEqual(
      Array.from({ length: 49 }, (_, i) => 200 - i)
    );
    index.add(120); // older than all now held, after the sweep
    expect(index.oldest).toBe(120);
    expect(index.newestFirst().length).toBe(50);
  });
});
