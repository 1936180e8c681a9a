// How the sidecar runs in production, for the tests and the bench that must run it the same way.

/**
 * The heap flags the image and `npm start` run the sidecar with (deploy/Dockerfile, docs/operations.md;
 * test/deploy/node-flags.test.ts holds those to these). Only flags NODE_OPTIONS accepts: the image
 * sets them there, so that an operator can change the heap without replacing the entrypoint.
 */
export const DEPLOYED_NODE_FLAGS = ['--max-old-space-size=128', '--max-semi-space-size=8'];
