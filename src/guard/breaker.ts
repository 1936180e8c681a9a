// A circuit breaker over the store: after `failuresToOpen` failures in a row, stop sending
// decisions to the store; a background probe closes it again when the store answers.

export class Breaker {
  private failures = 0;
  private open = false;

  constructor(private readonly failuresToOpen: number) {}

  get isOpen(): boolean {
    return this.open;
  }

  /** True when this success closed it. */
  success(): boolean {
    this.failures = 0;
    if (!this.open) return false;
    this.open = false;
    return true;
  }

  /** True when this failure opened it. */
  failure(): boolean {
    this.failures++;
    if (this.open || this.failures < this.failuresToOpen) return false;
    this.open = true;
    return true;
  }
}
