/** What a run's answers were: how many, granted or denied, and who decided them. */
export class Tally {
  answered = 0;
  granted = 0;
  denied = 0;
  /** Requests that got no answer (their stream broke, or the run timed out). */
  failed = 0;
  readonly decidedBy: Record<string, number> = {};

  count(res: { granted: boolean; decided_by: string }): void {
    this.answered++;
    if (res.granted) this.granted++;
    else this.denied++;
    this.decidedBy[res.decided_by] = (this.decidedBy[res.decided_by] ?? 0) + 1;
  }
}

/** Counts by name added up, e.g. the decided_by tallies of several runs. */
export function sumTallies(tallies: readonly Record<string, number>[]): Record<string, number> {
  const sum: Record<string, number> = {};
  for (const tally of tallies) for (const [key, n] of Object.entries(tally)) sum[key] = (sum[key] ?? 0) + n;
  return sum;
}
