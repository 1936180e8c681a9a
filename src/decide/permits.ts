// Grants that can still be released or settled, kept in this process. A service releases
// through its own sidecar, so the table is local; concurrency slots themselves live in the store
// with a ttl, so a permit lost with this process is still reclaimed there.
import { randomFillSync } from 'node:crypto';
import type { Resource } from '../config/policy.js';

export interface PermitRecord {
  resource: Resource;
  scope: string;
  cost: number;
  /** Store time of the grant. */
  grantedAt: number;
  /** Local time after which the permit can no longer be released. */
  expiresAt: number;
  /** Granted by the failure policy's local share: it is released there, not in the store. */
  local: boolean;
}

/**
 * 16 random bytes as base64url (22 characters): a permit id is a capability, so a caller who
 * did not get one cannot guess another's, and 128 random bits are unique across sidecars
 * without coordination.
 */
export const PERMIT_ID = /^[A-Za-z0-9_-]{22}$/;

const ID_BYTES = 16;
// One randomFillSync call serves this many ids: a grant costs a slice, not a system call.
const IDS_PER_DRAW = 256;

/** Draws permit ids from a pooled buffer of cryptographic randomness, refilled when used up. */
export class PermitIds {
  private readonly pool = Buffer.alloc(ID_BYTES * IDS_PER_DRAW);
  private offset = this.pool.length;

  next(): string {
    if (this.offset === this.pool.length) {
      randomFillSync(this.pool);
      this.offset = 0;
    }
    const start = this.offset;
    this.offset += ID_BYTES;
    return this.pool.toString('base64url', start, this.offset);
  }
}

export class PermitTable {
  private readonly records = new Map<string, PermitRecord>();
  private readonly ids = new PermitIds();
  /** Permits dropped to stay under the cap before they expired. */
  evicted = 0;

  constructor(
    private readonly maxPermits: number,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.records.size;
  }

  /** A fresh id, to name the concurrency slot before the store has granted it. */
  nextId(): string {
    return this.ids.next();
  }

  add(id: string, record: PermitRecord): void {
    this.records.set(id, record);
    if (this.records.size > this.maxPermits) {
      // Oldest first: Map keeps insertion order, and every permit's life is bounded anyway.
      this.records.delete(this.records.keys().next().value!);
      this.evicted++;
    }
  }

  /** Removes and returns a live permit; undefined when unknown, expired or already taken. */
  take(id: string): PermitRecord | undefined {
    const record = this.records.get(id);
    if (!record) return undefined;
    this.records.delete(id);
    return record.expiresAt > this.now() ? record : undefined;
  }

  sweep(now = this.now()): void {
    for (const [id, record] of this.records) if (record.expiresAt <= now) this.records.delete(id);
  }
}
