import { defineConfig } from 'vitest/config';

// `npm run test:image`: deploy/Dockerfile built and started for real (as root, with podman and
// debootstrap), apart from `npm test`.
export default defineConfig({
  test: {
    include: ['test/image/**/*.test.ts'],
    testTimeout: 60_000,
    // The first run on a machine debootstraps Debian, and every build whose package files changed runs npm ci.
    hookTimeout: 20 * 60_000,
    pool: 'forks',
    reporters: ['default', ['./test/support/summary-reporter.ts', { label: 'image' }]],
  },
});
