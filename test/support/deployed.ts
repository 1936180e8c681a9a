// How the sidecar runs in production, for the tests and the bench that must run it the same way.
// deploy/Dockerfile, `npm start` and docs/operations.md say the same (test/deploy/node-flags.test.ts).

/** The heap caps, in the image's NODE_OPTIONS: an operator can change them without replacing the entrypoint. */
export const DEPLOYED_NODE_OPTIONS = ['--max-old-space-size=128', '--max-semi-space-size=8'];

/**
 * On the image's node command line (its ENTRYPOINT), since NODE_OPTIONS refuses them. A 64 MB
 * starting heap keeps the old generation's first limits above what a busy sidecar promotes between
 * major GCs: on Node 24, without it, a sidecar under load runs one every 150 to 200 ms.
 */
export const DEPLOYED_ENTRYPOINT_FLAGS = ['--initial-heap-size=64'];

/** Every node flag the deployed sidecar runs with. */
export const DEPLOYED_NODE_FLAGS = [...DEPLOYED_NODE_OPTIONS, ...DEPLOYED_ENTRYPOINT_FLAGS];
