// Prints one plain closing line, `tests: N passed, N failed, N skipped`, that any CI can read
// (`image: ...` for the image test: the label is an option).
import type { Reporter, TestModule } from 'vitest/node';

export default class SummaryReporter implements Reporter {
  constructor(private readonly options: { label?: string } = {}) {}

  onTestRunEnd(modules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown>): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const module of modules) {
      for (const test of module.children.allTests()) {
        const state = test.result().state;
        if (state === 'passed') passed++;
        else if (state === 'failed') failed++;
        else skipped++;
      }
      if (module.state() === 'failed' && module.children.size === 0) failed++;
    }
    // A crashed worker or an error outside any test fails the run: count it, never hide it.
    failed += unhandledErrors.length;
    process.stdout.write(`\n${this.options.label ?? 'tests'}: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
