// The units of one limit that a lease holds. Each take adds a run: `count` units of which the
// first falls due at `firstDue` (local ms) and the rest one `stepMs` apart (a slice of a token
// bucket's schedule), or, with a step of 0, all at once (a window's units). A unit is served no
// sooner than it falls due, so what a sidecar serves follows the store's schedule exactly.

/** Runs kept apart at most; past it the two latest merge (later, never sooner: see add). */
const MAX_RUNS = 4;
/** How much sooner than a run's end the next take's units may be mapped and still continue it. */
const CONTINUATION_SLACK_MS = 2;

export class HeldUnits {
  /** Units held, due or not. */
  total = 0;
  private readonly firstDue: number[] = [];
  private readonly counts: number[] = [];

  constructor(readonly stepMs: number) {}

  add(firstDue: number, count: number): void {
    if (count <= 0) return;
    this.total += count;
    const last = this.counts.length - 1;
    if (last >= 0 && (this.stepMs === 0 || this.continues(last, firstDue))) {
      this.counts[last]! += count;
      return;
    }
    this.firstDue.push(firstDue);
    this.counts.push(count);
    if (this.counts.length > MAX_RUNS) {
      // One run of both counts, from the earlier run's start or from where the later run's start
      // would put the earlier run's units before it, whichever is later: its k-th unit falls due
      // when the two runs had at least k units due, so merging only ever serves later.
      const count = this.counts.pop()!;
      const due = this.firstDue.pop()!;
      const at = this.counts.length - 1;
      this.firstDue[at] = Math.max(this.firstDue[at]!, due - this.counts[at]! * this.stepMs);
      this.counts[at]! += count;
    }
  }

  /** Units due at `now`. */
  dueBy(now: number): number {
    if (this.stepMs === 0) return this.total;
    let due = 0;
    for (let i = 0; i < this.counts.length; i++) due += this.runDue(i, now);
    return due;
  }

  /** The local time at which `n` units (at most total) are due: never sooner than one is. */
  dueAt(n: number): number {
    if (this.stepMs === 0 || n <= 0) return Number.NEGATIVE_INFINITY;
    let low = Number.POSITIVE_INFINITY;
    let high = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < this.counts.length; i++) {
      low = Math.min(low, this.firstDue[i]!);
      // Half a step past a run's last unit: at epoch milliseconds a double is a quarter of a
      // microsecond coarse, and dueBy, dividing by the step, may not count a unit at its exact time.
      high = Math.max(high, this.firstDue[i]! + (this.counts[i]! - 0.5) * this.stepMs);
    }
    if (this.dueBy(low) >= n) return low;
    // dueBy only steps at a run's unit times; the search ends at most a microsecond after the moment.
    while (high - low > 0.001) {
      const mid = (low + high) / 2;
      if (this.dueBy(mid) >= n) high = mid;
      else low = mid;
    }
    return high;
  }

  /** Serves `n` units due at `now` (the caller checked dueBy), the earliest due first. */
  take(n: number, now: number): void {
    this.total -= n;
    if (this.stepMs === 0) {
      this.counts[0]! -= n;
      if (this.counts[0] === 0) this.clearRuns();
      return;
    }
    while (n > 0 && this.counts.length > 0) {
      let earliest = 0;
      for (let i = 1; i < this.counts.length; i++) if (this.firstDue[i]! < this.firstDue[earliest]!) earliest = i;
      const served = Math.min(n, this.runDue(earliest, now));
      if (served === 0) break;
      n -= served;
      this.counts[earliest]! -= served;
      this.firstDue[earliest]! += served * this.stepMs;
      if (this.counts[earliest] === 0) {
        this.counts.splice(earliest, 1);
        this.firstDue.splice(earliest, 1);
      }
    }
  }

  /** Empties the hold; answers how many units it held. */
  clear(): number {
    const held = this.total;
    this.total = 0;
    this.clearRuns();
    return held;
  }

  private clearRuns(): void {
    this.counts.length = 0;
    this.firstDue.length = 0;
  }

  /**
   * Whether a run due from `firstDue` continues run i: no other sidecar took between. Each take's
   * due times are mapped to this clock from when its answer came, so a continuation arrives up
   * to a round trip sooner than run i's end; extending run i serves those units that much later.
   */
  private continues(i: number, firstDue: number): boolean {
    const end = this.firstDue[i]! + this.counts[i]! * this.stepMs;
    return firstDue <= end && end - firstDue < CONTINUATION_SLACK_MS;
  }

  private runDue(i: number, now: number): number {
    const first = this.firstDue[i]!;
    if (now < first) return 0;
    return Math.min(this.counts[i]!, Math.floor((now - first) / this.stepMs) + 1);
  }
}
