// The Go client (clients/go) built offline with Debian's Go toolchain and Debian's Go packages,
// in GOPATH mode (see clients/go/README.md), and its Go tests run against a real sidecar on a real
// Redis; its generated code must be what Debian's protoc makes of proto/ today.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/paths.js';
import { requireTools, run } from '../support/command.js';
import { DEPLOYED_NODE_FLAGS, metric, useSidecar } from '../support/sidecar.js';
import { useRedis } from '../support/use-redis.js';
import { untilNoLine, untilWaiting } from '../support/line.js';

const MODULE = 'github.com/sluice/sluice/clients/go';
const CLIENT = join(packageRoot, 'clients', 'go');
const PACKAGES = [MODULE, `${MODULE}/sluicev1`];
const GO_PACKAGES = 'golang-go golang-google-grpc-dev golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev';
const PROTOC_PACKAGES = 'protobuf-compiler protoc-gen-go protoc-gen-go-grpc';
/**
 * The first build on a machine compiles grpc-go and its dependencies (about a minute on two busy
 * cores); the build cache under .ci/go-cache keeps them for later runs.
 */
const FIRST_BUILD_MS = 10 * 60_000;

// What clients/go/sluice_test.go expects of the sidecar.
const POLICY = `
store:
  timeout: 10s                  # generous: a busy machine must not pass for a store failure
resources:
  - name: minute
    keys: [tenant]
    on_store_failure: closed
    lease: { enabled: false }
    limits:
      - { name: per-minute, algorithm: token_bucket, rate: 1/1m, burst: 1 }
  - name: tokens
    keys: [tenant]
    on_store_failure: closed
    settle_within: 1m
    lease: { enabled: false }
    limits:
      - { name: per-day, algorithm: token_bucket, rate: 100/1d, burst: 100 }
  - name: slot
    keys: [tenant]
    on_store_failure: closed
    limits:
      - { name: inflight, algorithm: concurrency, max: 1, ttl: 30s }
  - name: reserved
    keys: [tenant]
    on_store_failure: closed
    lease: { enabled: false }
    reserve: [{ fraction: 0.5, min_priority: 5 }]
    lanes: { interactive: 0.5, batch: 0.5 }
    limits:
      - { name: per-day, algorithm: token_bucket, rate: 2/1d, burst: 2 }
`;

/** One `go test -json` event (cmd/test2json). */
interface TestEvent {
  Action: string;
  Test?: string;
  Output?: string;
}

/**
 * The environment that builds clients/go with no module proxy: GOPATH mode over a GOPATH that
 * holds only a link to clients/go, then Debian's Go sources. go.mod is not read in this mode.
 */
function offlineGoEnv(): NodeJS.ProcessEnv {
  const gopath = mkdtempSync(join(tmpdir(), 'sluice-gopath-'));
  const link = join(gopath, 'src', MODULE);
  mkdirSync(dirname(link), { recursive: true });
  symlinkSync(CLIENT, link);
  return {
    ...process.env,
    GO111MODULE: 'off',
    GOPATH: `${gopath}:/usr/share/gocode`,
    GOCACHE: join(packageRoot, '.ci', 'go-cache'),
    GOFLAGS: '',
    GOPROXY: 'off',
    // Pure Go: no C compiler needed, and the same binary whichever one is installed.
    CGO_ENABLED: '0',
  };
}

/** `go test -json` events; a failing test is an outcome here, not an error. */
function goTest(env: NodeJS.ProcessEnv): Promise<TestEvent[]> {
  return new Promise((resolve, reject) => {
    execFile('go', ['test', '-json', '-count=1', '-timeout=5m', MODULE], { env, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const events = stdout
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as TestEvent);
      if (err && !events.some((event) => event.Test)) reject(new Error(`go test failed before any test ran:\n${stderr}${stdout}`));
      else resolve(events);
    });
  });
}

/**
 * Serves the checkpoints of the Go tests (checkpoint in sluice_test.go): a line `NAME RESOURCE
 * TENANT`, answered `ok` once the store shows what the test expects there. `reached` lists them
 * as `NAME TENANT`, without the run's suffix of the tenant (`.run`).
 */
function checkpoints(check: (name: string, resource: string, tenant: string) => Promise<void>): { server: Server; reached: string[] } {
  const reached: string[] = [];
  const server = createServer((socket) => {
    createInterface({ input: socket }).once('line', (line) => {
      const [name = '', resource = '', tenant = ''] = line.split(' ');
      reached.push(`${name} ${tenant.slice(0, tenant.lastIndexOf('.'))}`);
      check(name, resource, tenant).then(
        () => socket.end('ok\n'),
        (err: Error) => socket.end(`failed: ${err.message.replaceAll('\n', ' ')}\n`),
      );
    });
  });
  return { server, reached };
}

describe('the Go client', () => {
  let env: NodeJS.ProcessEnv;
  beforeAll(async () => {
    await requireTools(['go', 'gofmt'], GO_PACKAGES);
    env = offlineGoEnv();
  });

  it('has the generated code that protoc makes of proto/ now (clients/go/generate.sh)', async () => {
    await requireTools(['/usr/bin/protoc', '/usr/bin/protoc-gen-go', '/usr/bin/protoc-gen-go-grpc'], PROTOC_PACKAGES);
    const fresh = mkdtempSync(join(tmpdir(), 'sluice-go-gen-'));
    await run(join(CLIENT, 'generate.sh'), [fresh]);
    const committed = join(CLIENT, 'sluicev1');
    expect(readdirSync(committed).sort()).toEqual(readdirSync(join(fresh, 'sluicev1')).sort());
    for (const file of readdirSync(committed)) {
      expect(readFileSync(join(committed, file), 'utf8'), `clients/go/sluicev1/${file} differs from a fresh generation: run clients/go/generate.sh`).toBe(
        readFileSync(join(fresh, 'sluicev1', file), 'utf8'),
      );
    }
  });

  it("declares the module that the proto's go_package is in", async () => {
    const goMod = JSON.parse(await run('go', ['mod', 'edit', '-json', join(CLIENT, 'go.mod')])) as { Module: { Path: string }; Go: string };
    expect(goMod.Module.Path).toBe(MODULE);
    expect(goMod.Go).toBe('1.19');
    const goPackage = /option go_package = "([^"]+)";/.exec(readFileSync(join(packageRoot, 'proto', 'sluice', 'v1', 'sluice.proto'), 'utf8'))?.[1];
    expect(goPackage).toBe(`${MODULE}/sluicev1;sluicev1`);
  });

  it('is gofmt-formatted', async () => {
    expect(await run('gofmt', ['-l', CLIENT])).toBe('');
  });

  it('passes go vet', async () => {
    await run('go', ['vet', ...PACKAGES], { env });
  }, FIRST_BUILD_MS);

  describe('against a real sidecar', () => {
    const world = useRedis();
    const held = useSidecar(
      () => POLICY,
      () => ({ SLUICE_REDIS_URL: world.redis.url }),
      DEPLOYED_NODE_FLAGS,
    );
    const gate = checkpoints(async (name, resource, tenant) => {
      if (name === 'waiting') await untilWaiting(world.redis.client, resource, tenant, 1);
      else if (name === 'gone') await untilNoLine(world.redis.client, resource, tenant, 10_000);
      else throw new Error(`no checkpoint ${name}`);
    });
    let events: TestEvent[] = [];

    beforeAll(async () => {
      await new Promise<void>((resolve) => gate.server.listen(0, '127.0.0.1', resolve));
      const { port } = gate.server.address() as { port: number };
      events = await goTest({ ...env, SLUICE_ADDR: held.sidecar.address, SLUICE_TEST_CHECKPOINTS: `127.0.0.1:${port}` });
    }, FIRST_BUILD_MS);
    afterAll(() => new Promise<void>((resolve) => gate.server.close(() => resolve())));

    /** Fails with the test's own output unless `go test` says it passed. */
    function expectPassed(test: string): void {
      const own = events.filter((event) => event.Test === test);
      const outcome = [...own].reverse().find((event) => ['pass', 'fail', 'skip'].includes(event.Action))?.Action ?? 'not run';
      const output = own.map((event) => event.Output ?? '').join('');
      expect(outcome, `${test}:\n${output || events.map((event) => event.Output ?? '').join('')}`).toBe('pass');
    }

    it('defaults its target to SLUICE_ADDR, then 127.0.0.1:50051', () => expectPassed('TestTarget'));
    it('returns a grant as a Permit with the deciding limit and who decided', () => expectPassed('TestGrant'));
    it('returns a denial as a *Denied with RetryAfter, or Never for a cost that cannot fit', () => expectPassed('TestDenial'));
    it('waits in the sidecar with WithMaxWait: granted after waiting with Waited set, or denied when it passes', () => expectPassed('TestMaxWait'));
    it('sends WithPriority (reserved capacity) and WithLane', () => expectPassed('TestPriorityAndLane'));
    it('settles the real cost once (Settle), and a later Settle or Release changes nothing', () => expectPassed('TestSettle'));
    it('frees a concurrency slot with Release (the next acquire is granted), once; an unknown permit is ErrUnknownPermit', () =>
      expectPassed('TestRelease'));
    it('returns errors about the request as they came, whatever OnUnavailable says', () => expectPassed('TestErrorsAsTheyCome'));

    it.each(['Return', 'Open', 'Closed'])('gives what OnUnavailable(%s) says for a port nothing listens on', (mode) =>
      expectPassed(`TestUnreachable/${mode}`),
    );
    it.each(['Return', 'Open', 'Closed'])('gives what OnUnavailable(%s) says for a sidecar that never answers (own deadline)', (mode) =>
      expectPassed(`TestSilentSidecar/${mode}`),
    );
    it("returns the caller's own deadline as codes.DeadlineExceeded, not as the sidecar's failure", () =>
      expectPassed('TestSilentSidecar/CallersDeadline'));

    it('leaves nothing in line or charged when the context of a waiting acquire is cancelled', async () => {
      expectPassed('TestCancelWhileWaiting');
      expect(gate.reached).toEqual(['waiting wait', 'waiting cancel', 'gone cancel']);
      expect(await metric(held.sidecar, 'sluice_wait_seconds_count', 'resource="slot"', 'end="cancelled"')).toBe(1);
    });
  });
});
