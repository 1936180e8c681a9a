import { configDefaults, defineConfig } from 'vitest/config';

// After every other file, one at a time: attacks that keep both cores busy for a minute (cancel
// storms, thousands of connections or requests in flight), which would starve tests that hold a
// 20 ms store budget; and the tests that time a stalled Redis to within 100 ms, which the other
// files (client builds, many sidecars) can starve in turn.
const ALONE = [
  'test/grpc/connections.test.ts',
  'test/e2e/waiting-faults.test.ts',
  'test/guard/overload.test.ts',
  'test/guard/late-answers.test.ts',
  'test/store/watchdog.test.ts',
  // Holds 16 MiB of bodies in flight over TLS and probes for the 503 while they are read.
  'test/kube/webhook.test.ts',
];
// The image test builds and starts the container image: `npm run test:image` (vitest.image.config.ts).
const IMAGE = 'test/image/**';

export default defineConfig({
  test: {
    // Tests start real redis-server and sidecar processes; the machines are small and shared.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    maxWorkers: 2,
    reporters: ['default', './test/support/summary-reporter.ts'],
    projects: [
      { extends: true, test: { name: 'shared', include: ['test/**/*.test.ts'], exclude: [...configDefaults.exclude, ...ALONE, IMAGE], sequence: { groupOrder: 0 } } },
      { extends: true, test: { name: 'alone', include: ALONE, fileParallelism: false, sequence: { groupOrder: 1 } } },
    ],
  },
});
