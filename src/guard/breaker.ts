// A circuit breaker over the store: after `failuresToOpen` failures in a row, stop sending
// decisions to the store; a background probe closes it again when the store answers.

export class Breaker {
  private failures = 0;
  /** Local time it opened; -1 while closed. */
  private openedAt = -1;

  constructor(
    private readonly failuresToOpen: number,
    private readonly now: () => number = Date.now,
  ) {}

  get isOpen(): boolean {
    return this.openedAt >= 0;
  }

  /** How long it has been open, 0 while closed. */
  openForMs(): number {
    return this.openedAt < 0 ? 0 : this.now() - this.openedAt;
  }

  /** True when this success closed it. */
  success(): boolean {
    this.failures = 0;
    if (this.openedAt < 0) return false;
    this.openedAt = -1;
    return true;
  }

  /** True when this failure opened it. */
  failure(): boolean {
    this.failures++;
    if (this.openedAt >= 0 || this.failures < this.failuresToOpen) return false;
    this.openedAt = this.now();
    return true;
  }
}
