// `sluice serve`: runs the sidecar until SIGTERM or SIGINT, then drains it.
import { isAbsolute, join, relative } from 'node:path';
import { loadPolicyFile } from '../config/load.js';
import type { Policy } from '../config/policy.js';
import { EnvoyConfigError } from '../envoy/runtime.js';
import { createLogger } from '../log.js';
import { packageRoot } from '../paths.js';
import { ListenError, startSidecar, type Sidecar } from '../sidecar.js';
import { parseCommandLine } from './args.js';
import { DEFAULT_ADDR } from './call.js';
import { invalidPolicy } from './check.js';
import { logLevel, stopDelayMs } from './environment.js';
import { SERVE_USAGE } from './usage.js';

export async function serve(args: string[]): Promise<number> {
  const { values } = parseCommandLine(
    'sluice serve',
    args,
    { config: { type: 'string', short: 'c' }, pretty: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    SERVE_USAGE,
    0,
  );
  if (values.help) {
    process.stdout.write(SERVE_USAGE);
    return 0;
  }
  const delayMs = stopDelayMs();
  if (logLevel() === null || delayMs === undefined) return 2;
  const policyFile = values.config ?? process.env.SLUICE_CONFIG ?? join(packageRoot, 'examples', 'quickstart.yaml');
  let policy;
  try {
    policy = loadPolicyFile(policyFile, process.env);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 1;
  }
  // Upstream's LOG_LEVEL, read with envoy.upstream_env, unless SLUICE_LOG_LEVEL says otherwise.
  const log = createLogger(logLevel(policy.envoy?.upstreamEnv?.logLevel ?? 'info')!, values.pretty ?? false);
  let sidecar: Sidecar | undefined;
  let stopping = false;
  // SIGHUP reads the policy file again (it is also watched) instead of Node's default, exiting;
  // one that comes before the sidecar is up is dropped.
  process.on('SIGHUP', () => {
    if (!stopping) sidecar?.reloadPolicy();
  });
  try {
    sidecar = await startSidecar(policy, log, { file: policyFile, env: process.env });
  } catch (err) {
    if (err instanceof EnvoyConfigError) process.stderr.write(`${invalidPolicy(policyFile, err).message}\n`);
    else if (err instanceof ListenError) process.stderr.write(`${listenProblem(err, policyFile)}\n`);
    else log.fatal({ err }, 'could not start');
    return 1;
  }
  const stopped = new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      // A repeated signal must not cut the drain short; the grace period bounds it.
      if (stopping) return;
      stopping = true;
      const drain = () => {
        log.info({ signal }, 'shutting down');
        sidecar.stop().then(resolve, (err) => {
          log.error({ err }, 'shutdown failed');
          resolve();
        });
      };
      if (signal !== 'SIGTERM' || delayMs === 0) return drain();
      // The classic sidecar: kubelet signals every container at once, and the app may still
      // need answers while it finishes; serving goes on as before until the delay is over.
      log.info({ signal, stopDelayMs: delayMs }, `still serving for ${delayMs} ms (SLUICE_STOP_DELAY), then shutting down`);
      setTimeout(drain, delayMs);
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
  // Said once the signals are handled: whoever waits for it may stop the sidecar at once.
  log.info(
    {
      address: sidecar.address,
      admin: sidecar.adminAddress,
      ...(sidecar.httpAddress ? { http: sidecar.httpAddress } : {}),
      policy: policyFile,
      store: policy.store.redis ? 'redis' : 'memory',
    },
    'listening',
  );
  // For a person at a terminal; stdout stays JSON lines for whatever collects them.
  if (process.stderr.isTTY) process.stderr.write(`${listeningLine(sidecar, policy)}\n`);
  await stopped;
  log.info('stopped');
  return 0;
}

/** Where each server's address is set, and what to call it. */
const SETTINGS: Record<ListenError['server'], { name: string; variable: string | null; key: string; orOff: string }> = {
  grpc: { name: 'gRPC', variable: 'SLUICE_LISTEN', key: 'server.listen', orOff: '' },
  admin: { name: 'admin HTTP', variable: 'SLUICE_ADMIN', key: 'server.admin', orOff: ' (or to off)' },
  http: { name: 'Envoy HTTP', variable: null, key: 'envoy.http_listen', orOff: ' (or remove it)' },
};

const REASONS: Record<string, string> = {
  EADDRINUSE: 'is in use',
  EACCES: 'is not allowed to this user',
  EADDRNOTAVAIL: 'is not an address of this machine',
  ENOTFOUND: 'names a host that does not resolve',
};

/** `sluice: 127.0.0.1:50051 (gRPC) is in use: set SLUICE_LISTEN to another address` */
function listenProblem(err: ListenError, policyFile: string): string {
  const setting = SETTINGS[err.server];
  const reason = REASONS[err.code ?? ''] ?? `cannot be listened on (${err.cause.message})`;
  // The variable wins over the file, so it is the one to change when it is set.
  const inFile = `${setting.key} in ${policyFile}`;
  const where = !setting.variable ? inFile : process.env[setting.variable] ? setting.variable : `${setting.variable}, or ${inFile},`;
  return `sluice: ${err.address} (${setting.name}) ${reason}: set ${where} to another address${setting.orOff}`;
}

/**
 * `sluice listening on 127.0.0.1:50051 (admin http://127.0.0.1:9464); try: npx sluice acquire
 * partner-api tenant=acme`: the first resource, a value for each of its keys.
 */
function listeningLine(sidecar: Sidecar, policy: Policy): string {
  const admin = sidecar.adminAddress ? ` (admin http://${sidecar.adminAddress})` : '';
  const resource = policy.resources.values().next().value;
  if (resource === undefined) return `sluice listening on ${sidecar.address}${admin}`;
  // acquire calls SLUICE_ADDR, else DEFAULT_ADDR, unless --addr says otherwise.
  const target = callAddress(sidecar.address);
  const addr = target === (process.env.SLUICE_ADDR ?? DEFAULT_ADDR) ? '' : ` --addr ${shellWord(target)}`;
  const descriptors = resource.keys.map((key) => ` ${shellWord(`${key}=acme`)}`).join('');
  return `sluice listening on ${sidecar.address}${admin}; try: ${invocation()} acquire ${resource.name}${descriptors}${addr}`;
}

/** Where a client on this machine reaches `address`: every interface is reached on 127.0.0.1. */
function callAddress(address: string): string {
  if (address.startsWith('unix:')) return address;
  const colon = address.lastIndexOf(':');
  const host = address.slice(0, colon);
  return ['', '0.0.0.0', '[::]', '::'].includes(host) ? `127.0.0.1${address.slice(colon)}` : address;
}

/** How to run this CLI from here: `npx sluice` inside its package (as after npm start), else `sluice`. */
function invocation(): string {
  const path = relative(packageRoot, process.cwd());
  return path.startsWith('..') || isAbsolute(path) ? 'sluice' : 'npx sluice';
}

function shellWord(word: string): string {
  return /^[\w.:/=@+-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}
