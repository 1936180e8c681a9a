// The node flags the sidecar is deployed with are written in four places (the image, `npm start`,
// the operations guide, and DEPLOYED_NODE_FLAGS for the tests and the bench); this holds the first
// three to the last without building the image.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/paths.js';
import { DEPLOYED_NODE_FLAGS } from '../support/deployed.js';

const run = promisify(execFile);
const read = (path: string) => readFileSync(join(packageRoot, path), 'utf8');
const flags = DEPLOYED_NODE_FLAGS.join(' ');

describe('the deployed node flags', () => {
  it('are what the image sets in NODE_OPTIONS', () => {
    expect(read('deploy/Dockerfile')).toContain(`\nENV NODE_OPTIONS="${flags}"\n`);
  });

  it('are what `npm start` runs node with', () => {
    const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
    expect(pkg.scripts.start).toContain(`node ${flags} bin/sluice.js serve`);
  });

  it('are the ones docs/operations.md names', () => {
    expect(read('docs/operations.md')).toContain(`The image and \`npm start\` run Node with \`${flags}\`.`);
  });

  it('are all accepted in NODE_OPTIONS, where the image sets them', async () => {
    // node refuses to start (exit 9) on a V8 flag NODE_OPTIONS does not allow: --initial-heap-size is one.
    const { stderr } = await run(process.execPath, ['-e', '0'], { env: { ...process.env, NODE_OPTIONS: flags } });
    expect(stderr).toBe('');
  });
});
