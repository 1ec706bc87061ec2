/**
 * The order of the loaded jobs: their ids, newest first, kept so that what events do most costs
 * O(1) however many jobs are loaded.
 *
 * Ids grow with creation (SQLite AUTOINCREMENT), so a new job goes on top: the ids are held
 * oldest first and a new one is pushed. A removed id stays in place as a tombstone, skipped when
 * read and swept out once tombstones outnumber the live ids. Only a job that enters the list
 * between loaded ones (a filter it now matches, a page of older jobs) costs a search and a move.
 */

export class JobIndex {
  /** How many ids are in the index. */
  get size(): number {
    return this._live.size;
  }

  /** Whether `id` is in the index. */
  has(id: number): boolean {
    return this._live.has(id);
  }

  /** The newest id, or undefined when empty. */
  get newest(): number | undefined {
    while (this._ids.length > this._head) {
      const id = this._ids[this._ids.length - 1];
      if (this._live.has(id)) {
        return id;
      }
      this._ids.pop();
      this._dead.delete(id);
    }
    return undefined;
  }

  /** The oldest id, or undefined when empty. */
  get oldest(): number | undefined {
    while (this._head < this._ids.length) {
      const id = this._ids[this._head];
      if (this._live.has(id)) {
        return id;
      }
      this._head++;
      this._dead.delete(id);
    }
    return undefined;
  }

  /** Add an id: O(1) on top, a search and a move in between. */
  add(id: number): void {
    if (this._live.has(id)) {
      return;
    }
    this._live.add(id);
    if (this._dead.delete(id)) {
      return; // still in place: back to life
    }
    const newest =
      this._ids.length > this._head
        ? this._ids[this._ids.length - 1]
        : undefined;
    if (newest === undefined || id > newest) {
      this._ids.push(id);
    } else if (id < this._ids[this._head] && this._head > 0) {
      this._ids[--this._head] = id;
    } else {
      this._ids.splice(this._position(id), 0, id);
      this.moves++;
    }
  }

  /** Add many ids (a page): older than all held ones in one step, else one by one. */
  addAll(ids: readonly number[]): void {
    const fresh = ids.filter(id => !this._live.has(id) && !this._dead.has(id));
    const oldest = this.oldest;
    if (
      fresh.length > 1 &&
      (oldest === undefined || fresh.every(id => id < oldest))
    ) {
      const older = [...fresh].sort((a, b) => a - b);
      this._ids = [...older, ...this._ids.slice(this._head)];
      this._head = 0;
      for (const id of older) {
        this._live.add(id);
      }
      return;
    }
    for (const id of ids) {
      this.add(id);
    }
  }

  /** Remove an id (a tombstone until the next sweep). */
  delete(id: number): void {
    if (!this._live.delete(id)) {
      return;
    }
    this._dead.add(id);
    if (this._dead.size > 64 && this._dead.size > this._live.size) {
      this._sweep();
    }
  }

  /** Remove and return the oldest id. */
  dropOldest(): number | undefined {
    const id = this.oldest;
    if (id !== undefined) {
      this._live.delete(id);
      this._head++;
    }
    return id;
  }

  /** Empty the index. */
  clear(): void {
    this._ids = [];
    this._head = 0;
    this._live.clear();
    this._dead.clear();
  }

  /** The ids, newest first (O(size): once per render, not per event). */
  newestFirst(): number[] {
    const out: number[] = [];
    for (let i = this._ids.length - 1; i >= this._head; i--) {
      if (this._live.has(this._ids[i])) {
        out.push(this._ids[i]);
      }
    }
    return out;
  }

  /**
   * How many times an id was moved into place between others (each an O(size) step); the
   * tests count them.
   */
  moves = 0;

  /** Where `id` goes among the held ids (binary search; tombstones keep their order). */
  private _position(id: number): number {
    let low = this._head;
    let high = this._ids.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this._ids[mid] < id) {
        low = mid + 1;
      } else {
        high = mid;
      }
    }
    return low;
  }

  private _sweep(): void {
    this._ids = this._ids.slice(this._head).filter(id => this._live.has(id));
    this._head = 0;
    this._dead.clear();
  }

  /** Ids oldest first from `_head` on (live ones and tombstones). */
  private _ids: number[] = [];
  private _head = 0;
  private _live = new Set<number>();
  private _dead = new Set<number>();
}
