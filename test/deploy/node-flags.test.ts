// The node flags the sidecar is deployed with are written in four places (the image, `npm start`,
// the operations guide, and test/support/deployed.ts for the tests and the bench); this holds the
// first three to the last without building the image.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/paths.js';
import { DEPLOYED_ENTRYPOINT_FLAGS, DEPLOYED_NODE_FLAGS, DEPLOYED_NODE_OPTIONS } from '../support/deployed.js';

const run = promisify(execFile);
const read = (path: string) => readFileSync(join(packageRoot, path), 'utf8');

describe('the deployed node flags', () => {
  it('are what the image sets in NODE_OPTIONS and puts on its entrypoint', () => {
    const dockerfile = read('deploy/Dockerfile');
    expect(dockerfile).toContain(`\nENV NODE_OPTIONS="${DEPLOYED_NODE_OPTIONS.join(' ')}"\n`);
    const entrypoint = ['node', ...DEPLOYED_ENTRYPOINT_FLAGS, 'bin/sluice.js'].map((arg) => `"${arg}"`).join(', ');
    expect(dockerfile).toContain(`\nENTRYPOINT [${entrypoint}]\n`);
  });

  it('are what `npm start` runs node with', () => {
    const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
    expect(pkg.scripts.start).toContain(`node ${DEPLOYED_NODE_FLAGS.join(' ')} bin/sluice.js serve`);
  });

  it('are the ones docs/operations.md names', () => {
    const prose = read('docs/operations.md').replace(/\s+/g, ' ');
    expect(prose).toContain(`The image and \`npm start\` run Node with \`${DEPLOYED_NODE_FLAGS.join(' ')}\``);
  });

  it('that the image sets in NODE_OPTIONS are accepted there', async () => {
    // node refuses to start (exit 9) on a V8 flag NODE_OPTIONS does not allow, --initial-heap-size among them.
    const { stderr } = await run(process.execPath, ['-e', '0'], { env: { ...process.env, NODE_OPTIONS: DEPLOYED_NODE_OPTIONS.join(' ') } });
    expect(stderr).toBe('');
  });
});
