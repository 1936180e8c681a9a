// The built CLI's command line: --version, each command's --help, and whatever a command does not
// take refused in one line that names it, then the usage, exit 2, never a stack trace.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CALL_USAGE } from '../../src/cli/call.js';
import { CHECK_USAGE, SERVE_USAGE, USAGE } from '../../src/cli/usage.js';
import { packageRoot } from '../../src/paths.js';
import { runCli } from '../support/run-cli.js';
import { writePolicy } from '../support/sidecar.js';

const VERSION = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')).version as string;
const POLICY = 'resources: [{ name: api, limits: [{ name: l, algorithm: fixed_window, rate: 1/s }] }]\n';
/** Should a command line be taken by mistake, serve listens nowhere that matters. */
const ENV = { SLUICE_LISTEN: '127.0.0.1:0', SLUICE_ADMIN: 'off' };

describe('sluice --version', () => {
  it.each([['--version'], ['-v'], ['version']])('%s prints the version of package.json', async (flag) => {
    expect(await runCli([flag])).toEqual({ code: 0, stdout: `${VERSION}\n`, stderr: '' });
  });
});

describe('a command line a command does not take', () => {
  const policy = writePolicy(POLICY);
  it.each([
    [['--nope'], 'sluice: unknown option --nope', USAGE],
    [['bogus'], 'sluice: unknown command "bogus"', USAGE],
    [['serve', '--bogus'], 'sluice serve: unknown option --bogus', SERVE_USAGE],
    [['serve', '--prety'], 'sluice serve: unknown option --prety (did you mean --pretty?)', SERVE_USAGE],
    [['serve', '-x'], 'sluice serve: unknown option -x', SERVE_USAGE],
    [['serve', '--config'], 'sluice serve: --config needs a value', SERVE_USAGE],
    [['serve', '--config', '--pretty'], 'sluice serve: --config needs a value', SERVE_USAGE],
    [['serve', '--pretty=yes'], 'sluice serve: --pretty takes no value', SERVE_USAGE],
    [['serve', policy], `sluice serve: unexpected argument ${JSON.stringify(policy)}`, SERVE_USAGE],
    [['check', '--bogus', policy], 'sluice check: unknown option --bogus', CHECK_USAGE],
    [['check'], 'sluice check: name the policy file: sluice check FILE', CHECK_USAGE],
    [['check', policy, policy], `sluice check: unexpected argument ${JSON.stringify(policy)}`, CHECK_USAGE],
    [['inject', '--bogus'], 'sluice inject: unknown option --bogus', USAGE],
    [['install', '--bogus'], 'sluice install: unknown option --bogus', USAGE],
    [['acquire', 'api', 'tenant=a', '--bogus'], 'sluice acquire: unknown option --bogus', CALL_USAGE],
    [['release', 'p-1', '--bogus'], 'sluice release: unknown option --bogus', CALL_USAGE],
    [['inspect', 'api', 'tenant=a', '--bogus'], 'sluice inspect: unknown option --bogus', CALL_USAGE],
    [['version', '--bogus'], 'sluice version: unknown option --bogus', USAGE],
    [['--version', 'now'], 'sluice --version: unexpected argument "now"', USAGE],
    [['help', '--bogus'], 'sluice help: unknown option --bogus', USAGE],
  ])('%j: one line naming it, the usage, exit 2', async (args, line, usage) => {
    expect(await runCli(args, ENV)).toEqual({ code: 2, stdout: '', stderr: `${line}\n\n${usage}` });
  });
});

describe('no command', () => {
  it('prints the usage on stderr and exits 2', async () => {
    expect(await runCli([], ENV)).toEqual({ code: 2, stdout: '', stderr: USAGE });
  });
});

describe('each command describes itself', () => {
  it.each([
    [['serve', '--help'], SERVE_USAGE],
    [['serve', '-h'], SERVE_USAGE],
    [['help', 'serve'], SERVE_USAGE],
    [['check', '--help'], CHECK_USAGE],
    [['check', '-h'], CHECK_USAGE],
    [['help', 'check'], CHECK_USAGE],
    [['help', 'acquire'], CALL_USAGE],
    [['help', 'inspect'], CALL_USAGE],
    [['--help'], USAGE],
    [['help'], USAGE],
  ])('%j prints its usage and exits 0', async (args, usage) => {
    expect(await runCli(args, ENV)).toEqual({ code: 0, stdout: usage, stderr: '' });
  });

  it("serve's usage names its flags and every variable it reads", () => {
    expect(SERVE_USAGE).toMatch(/^usage: sluice serve \[--config FILE\] \[--pretty\]\n/);
    for (const flag of ['-c, --config FILE', '--pretty', '-h, --help']) expect(SERVE_USAGE).toContain(`\n  ${flag} `);
    const variables = ['SLUICE_CONFIG', 'SLUICE_LISTEN', 'SLUICE_ADMIN', 'SLUICE_REDIS_URL', 'SLUICE_REDIS_PASSWORD', 'SLUICE_LOG_LEVEL', 'SLUICE_STOP_DELAY'];
    for (const variable of variables) expect(SERVE_USAGE).toContain(`\n  ${variable} `);
  });

  it("check's usage names its flags and the variables it applies and checks", () => {
    expect(CHECK_USAGE).toMatch(/^usage: sluice check FILE\n/);
    for (const flag of ['-c, --config FILE', '-h, --help']) expect(CHECK_USAGE).toContain(`\n  ${flag} `);
    const variables = ['SLUICE_LISTEN', 'SLUICE_ADMIN', 'SLUICE_REDIS_URL', 'SLUICE_REDIS_PASSWORD', 'SLUICE_LOG_LEVEL', 'SLUICE_STOP_DELAY'];
    for (const variable of variables) expect(CHECK_USAGE).toContain(`\n  ${variable} `);
  });

  it('the usage of every command names each command and points at those with a usage of their own', () => {
    for (const command of ['serve', 'check', 'inject', 'install', 'acquire', 'release', 'inspect', 'version']) expect(USAGE).toContain(`\n  ${command} `);
    expect(USAGE).toContain('sluice serve --help, sluice check --help and sluice acquire --help');
  });
});
