// `sluice acquire | release | inspect`: one call to a running sidecar over its own API, so that
// nobody needs a gRPC tool to try sluice or to look at a key. Human output by default, one JSON
// object with --json. Exit codes: 0 granted (released, inspected), 1 denied (not released),
// 2 a usage error, 3 the call failed (the sidecar unreachable, or its error status).
import { readFileSync } from 'node:fs';
import { credentials, makeGenericClientConstructor, status, type ChannelCredentials, type ChannelOptions, type Client, type ServiceError } from '@grpc/grpc-js';
import { parseDuration } from '../config/units.js';
import { serviceOf, sluicePackage } from '../grpc/proto.js';
import { parseCommandLine, UsageError } from './args.js';

export const DEFAULT_ADDR = '127.0.0.1:50051';

export const CALL_USAGE = `usage:
  sluice acquire RESOURCE KEY=VALUE... [--cost N] [--max-wait DURATION] [--priority P] [--lane LANE]
  sluice release PERMIT_ID [--actual N]
  sluice inspect RESOURCE KEY=VALUE...

  Each calls the sidecar at --addr (default $SLUICE_ADDR, else ${DEFAULT_ADDR}).
  acquire     asks for --cost units (default 1) of RESOURCE for the scope KEY=VALUE... names;
              --max-wait (e.g. 2s, 500ms) waits in line up to that long instead of a denial
  release     gives back a permit (its concurrency slots); --actual settles the real cost
  inspect     shows the scope's limits and waiters without charging anything

options:
  --addr HOST:PORT    the sidecar (or unix:/path/to.sock)
  --json              print the answer as one JSON object
  -h, --help          this help

TLS, for a sidecar with server.tls (any of these calls over TLS):
  --tls               trust the system's CAs
  --tls-ca FILE       trust the CAs in this PEM file instead
  --tls-cert FILE     present this client certificate (with --tls-key), for a sidecar
  --tls-key FILE      with server.tls.client_ca_file
  --tls-server-name NAME  the name to check the sidecar's certificate against, when it is
                      not the host of --addr

exit codes: 0 granted, released or inspected; 1 denied, or the permit was not released;
            2 a usage error; 3 the call failed (the message says why)
`;

const OK = 0;
const REFUSED = 1;
const CALL_FAILED = 3;

/** How long past its max_wait a call may take (a busy sidecar, a slow store) before it is given up. */
const DEADLINE_MARGIN_MS = 10_000;

type Verb = 'acquire' | 'release' | 'inspect';

interface Duration {
  seconds: number;
  nanos: number;
}

const OPTIONS = {
  addr: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  cost: { type: 'string' },
  'max-wait': { type: 'string' },
  priority: { type: 'string' },
  lane: { type: 'string' },
  actual: { type: 'string' },
  tls: { type: 'boolean' },
  'tls-ca': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'tls-server-name': { type: 'string' },
} as const;

/** Runs the call; a command line it does not take throws UsageError (main prints it, exit 2). */
export async function call(verb: Verb, argv: string[]): Promise<number> {
  const parsed = parseCommandLine(`sluice ${verb}`, argv, OPTIONS, CALL_USAGE, Number.POSITIVE_INFINITY);
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(CALL_USAGE);
    return OK;
  }
  const request = verb === 'release' ? releaseRequest(positionals, values) : scopeRequest(verb, positionals, values);
  const addr = values.addr ?? process.env.SLUICE_ADDR ?? DEFAULT_ADDR;
  const json = values.json ?? false;
  const channel = channelOf(verb, values);
  const client = new RateLimiterClient(addr, channel.credentials, channel.options);
  try {
    const maxWaitMs = durationMs(request.max_wait as Duration | undefined) ?? 0;
    const answer = await unary(client, METHOD[verb], request, maxWaitMs + DEADLINE_MARGIN_MS);
    return show(verb, request, answer, json);
  } catch (err) {
    if (typeof (err as ServiceError).code !== 'number') throw err;
    return callFailed(verb, addr, err as ServiceError, json, channel.tls);
  } finally {
    client.close();
  }
}

const RateLimiterClient = makeGenericClientConstructor(serviceOf(sluicePackage, 'sluice.v1.RateLimiter'), 'RateLimiter');
const METHOD: Record<Verb, string> = { acquire: 'Acquire', release: 'Release', inspect: 'Inspect' };

function unary(client: Client, method: string, request: object, timeoutMs: number): Promise<Record<string, any>> {
  return new Promise((resolve, reject) => {
    (client as unknown as Record<string, Function>)[method]!.call(client, request, { deadline: Date.now() + timeoutMs }, (err: ServiceError | null, res: Record<string, any>) =>
      err ? reject(err) : resolve(res),
    );
  });
}

type Values = Record<string, string | boolean | undefined>;

/** Plaintext, or TLS as the --tls flags say; a file that cannot be read is a usage error. */
function channelOf(verb: Verb, values: Values): { credentials: ChannelCredentials; options: ChannelOptions; tls: boolean } {
  const file = (flag: string) => {
    const path = values[flag] as string | undefined;
    if (path === undefined) return null;
    try {
      return readFileSync(path);
    } catch (err) {
      throw bad(verb, `--${flag} ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  };
  const tls = ['tls', 'tls-ca', 'tls-cert', 'tls-key', 'tls-server-name'].some((flag) => values[flag] !== undefined);
  if (!tls) return { credentials: credentials.createInsecure(), options: {}, tls };
  // grpc-js gives Node an IP address of --addr as the TLS server name, and Node warns about that
  // on stderr (DEP0123): a warning about grpc-js, not about the command.
  process.noDeprecation = true;
  if ((values['tls-cert'] === undefined) !== (values['tls-key'] === undefined)) throw bad(verb, '--tls-cert and --tls-key go together: a client certificate and its key');
  const name = values['tls-server-name'] as string | undefined;
  return {
    credentials: credentials.createSsl(file('tls-ca'), file('tls-key'), file('tls-cert')),
    options: name === undefined ? {} : { 'grpc.ssl_target_name_override': name, 'grpc.default_authority': name },
    tls,
  };
}

/** acquire and inspect: RESOURCE KEY=VALUE... */
function scopeRequest(verb: Verb, positionals: string[], values: Values): Record<string, unknown> {
  const [resource, ...pairs] = positionals;
  if (resource === undefined) throw bad(verb, `name the resource: sluice ${verb} RESOURCE KEY=VALUE...`);
  const descriptors: Record<string, string> = {};
  for (const pair of pairs) {
    const at = pair.indexOf('=');
    if (at <= 0) throw bad(verb, `"${pair}" is not KEY=VALUE`);
    descriptors[pair.slice(0, at)] = pair.slice(at + 1);
  }
  const request: Record<string, unknown> = { resource, descriptors };
  if (verb === 'inspect') {
    for (const flag of ['cost', 'max-wait', 'priority', 'lane', 'actual']) if (values[flag] !== undefined) throw bad(verb, `--${flag} is not an inspect option`);
    return request;
  }
  if (values.actual !== undefined) throw bad(verb, '--actual belongs to release');
  if (values.cost !== undefined) request.cost = units(verb, '--cost', values.cost as string);
  if (values['max-wait'] !== undefined) request.max_wait = wireDuration(values['max-wait'] as string);
  if (values.priority !== undefined) request.priority = priority(values.priority as string);
  if (values.lane !== undefined) request.lane = values.lane;
  return request;
}

function releaseRequest(positionals: string[], values: Values): Record<string, unknown> {
  for (const flag of ['cost', 'max-wait', 'priority', 'lane']) if (values[flag] !== undefined) throw bad('release', `--${flag} is not a release option`);
  if (positionals.length !== 1) throw bad('release', 'name one permit: sluice release PERMIT_ID [--actual N]');
  const request: Record<string, unknown> = { permit_id: positionals[0] };
  if (values.actual !== undefined) request.actual_cost = units('release', '--actual', values.actual as string);
  return request;
}

/** A whole number of units, passed on as digits: the sidecar judges its bounds, exactly. */
function units(verb: Verb, flag: string, text: string): string {
  if (!/^\d+$/.test(text)) throw bad(verb, `${flag} "${text}": must be a whole number of units`);
  return text;
}

function priority(text: string): number {
  const p = Number(text);
  if (!/^-?\d+$/.test(text) || p < -(2 ** 31) || p >= 2 ** 31) throw bad('acquire', `--priority "${text}": must be a whole number from -2147483648 to 2147483647`);
  return p;
}

function wireDuration(text: string): Duration {
  const ms = parseDuration(text);
  if (ms === undefined || !Number.isFinite(ms)) throw bad('acquire', `--max-wait "${text}": must be a duration such as 500ms, 2s or 1m`);
  const whole = Math.ceil(ms);
  return { seconds: Math.floor(whole / 1000), nanos: (whole % 1000) * 1_000_000 };
}

function durationMs(d: Duration | null | undefined): number | null {
  return d ? d.seconds * 1000 + Math.round(d.nanos / 1e6) : null;
}

function show(verb: Verb, request: Record<string, unknown>, answer: Record<string, any>, json: boolean): number {
  if (verb === 'release') {
    if (json) print({ released: answer.released });
    else print(answer.released ? `released ${request.permit_id}` : `not released: ${request.permit_id} is unknown, expired or already released`);
    return answer.released ? OK : REFUSED;
  }
  const scope = scopeText(request);
  if (verb === 'inspect') {
    const limits = answer.limits as Record<string, any>[];
    if (json) {
      print({ limits: limits.map((l) => ({ name: l.name, algorithm: l.algorithm, remaining: l.remaining, limit: l.limit, reset_after_ms: durationMs(l.reset_after) ?? 0 })), waiters: answer.waiters });
      return OK;
    }
    const lines = [`${scope}: ${answer.waiters} waiting`];
    for (const l of limits) lines.push(`  ${l.name} (${l.algorithm}): ${l.remaining} of ${l.limit} left${fullAgain(durationMs(l.reset_after) ?? 0)}`);
    print(lines.join('\n'));
    return OK;
  }
  if (json) {
    print({
      granted: answer.granted,
      permit_id: answer.permit_id,
      retry_after_ms: durationMs(answer.retry_after),
      remaining: answer.remaining,
      limit: answer.limit,
      reset_after_ms: durationMs(answer.reset_after),
      limit_name: answer.limit_name,
      decided_by: answer.decided_by,
      waited_ms: durationMs(answer.waited),
      reason: answer.reason,
    });
    return answer.granted ? OK : REFUSED;
  }
  const cost = request.cost ?? 1;
  const waited = durationMs(answer.waited);
  const lines = [`${answer.granted ? 'granted' : 'denied'}: ${scope}, cost ${cost}${answer.granted ? '' : `: ${answer.reason}`}`];
  if (answer.granted && answer.limit_name) {
    lines.push(`  ${answer.limit_name}: ${answer.remaining} of ${answer.limit} left${fullAgain(durationMs(answer.reset_after) ?? 0)}`);
  }
  if (!answer.granted) {
    const retry = durationMs(answer.retry_after);
    lines.push(retry === null ? '  it can never be granted as asked' : `  try again in ${formatMs(retry)}`);
  }
  lines.push(`  decided by ${answer.decided_by}${waited === null ? '' : ` after waiting ${formatMs(waited)}`}`);
  if (answer.permit_id) lines.push(`  permit ${answer.permit_id}: give it back with sluice release ${answer.permit_id} [--actual N]`);
  print(lines.join('\n'));
  return answer.granted ? OK : REFUSED;
}

function scopeText(request: Record<string, unknown>): string {
  const pairs = Object.entries(request.descriptors as Record<string, string>).map(([k, v]) => `${k}=${v}`);
  return [request.resource, ...pairs].join(' ');
}

function fullAgain(ms: number): string {
  return ms > 0 ? `, full again in ${formatMs(ms)}` : '';
}

/** 250ms, 1.5s, 2m30s, 3h5m */
export function formatMs(ms: number): string {
  if (ms < 1000) return `${Math.ceil(ms)}ms`;
  if (ms < 60_000) return `${Number((ms / 1000).toFixed(1))}s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60 > 0 ? `${s % 60}s` : ''}`;
  const m = Math.round(s / 60);
  return `${Math.floor(m / 60)}h${m % 60 > 0 ? `${m % 60}m` : ''}`;
}

function callFailed(verb: Verb, addr: string, err: ServiceError, json: boolean, tls: boolean): number {
  const code = status[err.code] ?? String(err.code);
  const message = unreachable(err, addr, tls) ?? err.details;
  if (json) print({ error: { code, message } });
  else process.stderr.write(`sluice ${verb}: ${code}: ${message}\n`);
  return CALL_FAILED;
}

/** grpc-js's words for a sidecar it could not reach, made plain; undefined for any other error. */
function unreachable(err: ServiceError, addr: string, tls: boolean): string | undefined {
  if (err.code !== status.UNAVAILABLE || !err.details.startsWith('No connection established')) return undefined;
  const cause = /Last error: (?:Error: )?(.*?)\.?( Resolution note:|$)/.exec(err.details)?.[1];
  // A sidecar that serves TLS closes a plaintext connection before HTTP/2 starts, and grpc-js
  // says only that it failed to connect.
  if (!tls && cause?.startsWith('Failed to connect')) return `${addr} closed the connection without answering: if the sidecar serves TLS (server.tls), call it with --tls or --tls-ca`;
  // Over TLS, anything but a failure to connect at all (connect ECONNREFUSED ...) is the
  // handshake's; a sidecar that refuses the client's certificate closes without a word.
  if (tls && !/^connect E[A-Z]+\b/.test(cause ?? '')) {
    return `the TLS handshake with ${addr} failed${cause ? ` (${cause})` : ''}: check --tls-ca (the CA that signed its certificate), --tls-server-name (a name the certificate carries) and, for a sidecar that asks for a client certificate, --tls-cert and --tls-key`;
  }
  return `no sidecar answers at ${addr}${cause ? ` (${cause})` : ''}: start one with sluice serve, or name it with --addr or SLUICE_ADDR`;
}

function bad(verb: Verb, message: string): UsageError {
  return new UsageError(`sluice ${verb}: ${message}`, CALL_USAGE);
}

function print(value: string | object): void {
  process.stdout.write(`${typeof value === 'string' ? value : JSON.stringify(value)}\n`);
}
