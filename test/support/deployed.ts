// How the sidecar runs in production, for the tests and the bench that must run it the same way.

/** The heap flags the image and `npm start` run the sidecar with (deploy/Dockerfile, docs/operations.md). */
export const DEPLOYED_NODE_FLAGS = ['--max-old-space-size=128', '--max-semi-space-size=8'];
