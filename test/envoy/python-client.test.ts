// A Python grpcio client (Debian's python3-grpcio, stubs generated at test time from the repo's
// proto/envoy by Debian's protoc + grpc_python_plugin) calls ShouldRateLimit on the built sidecar,
// as Envoy or any RLS client would.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../src/paths.js';
import { generatePythonStubs, runPythonClient, runPythonSteps, type Step } from '../support/python.js';
import { startSidecar, type SidecarProcess } from '../support/sidecar.js';
import { issueCertificate, makeTlsFiles, type TlsFiles } from '../support/tls.js';
import { configDir } from './support.js';

const SCRIPT = join(packageRoot, 'test', 'envoy', 'python', 'client.py');
const TLS_SCRIPT = join(packageRoot, 'test', 'envoy', 'python', 'tls_client.py');

const ENVOY_PROTOS = [
  'proto/envoy/config/core/v3/base.proto',
  'proto/envoy/type/v3/ratelimit_unit.proto',
  'proto/envoy/extensions/common/ratelimit/v3/ratelimit.proto',
  'proto/envoy/service/ratelimit/v3/rls.proto',
];

const DOMAIN = `
domain: py
descriptors:
  - key: tenant
    rate_limit: { unit: minute, requests_per_unit: 3, name: per-tenant }
  - key: path
    value: /health
    rate_limit: { unlimited: true }
  - key: route
    value: /api*v1
    share_threshold: true
    rate_limit: { unit: hour, requests_per_unit: 2, name: api-v1 }
  - key: plan
    value: free
    quota_mode: true
    metadata: { tier: free, limits: { daily: 100 } }
    rate_limit: { unit: hour, requests_per_unit: 1 }
  - key: plan
    value: trial
    quota_mode: true
    metadata: { tier: trial, limits: { daily: 10, burst: 2 } }
    rate_limit: { unit: hour, requests_per_unit: 5 }
`;

let sidecar: SidecarProcess;
let stubs: string;
let step: (name: string) => Step;

beforeAll(async () => {
  stubs = generatePythonStubs(ENVOY_PROTOS);
  sidecar = await startSidecar(`envoy:\n  config_dir: ${configDir({ 'py.yaml': DOMAIN })}\n  response_headers: true\n  response_dynamic_metadata: true\n`);
  step = await runPythonClient(SCRIPT, sidecar.address, stubs);
});

afterAll(async () => {
  await sidecar?.stop();
  if (stubs) rmSync(stubs, { recursive: true, force: true });
});

describe('a Python grpcio client with stubs generated from proto/envoy', () => {
  it('ran against Debian python3-grpcio', () => {
    expect(step('versions').grpc).toMatch(/^\d+\.\d+/);
  });

  it('gets one status per descriptor, with the limit, what remains, the reset, and headers', () => {
    expect(step('first')).toEqual({
      step: 'first',
      overall_code: 'OK',
      statuses: [
        { code: 'OK', current_limit: { name: 'per-tenant', requests_per_unit: 3, unit: 'MINUTE' }, limit_remaining: 2, reset_seconds: expect.any(Number) },
        { code: 'OK', current_limit: null, limit_remaining: 4294967295, reset_seconds: null },
      ],
      headers: { 'RateLimit-Limit': '3', 'RateLimit-Remaining': '2', 'RateLimit-Reset': expect.stringMatching(/^\d+$/) },
      dynamic_metadata: { domain: 'py', descriptors: [{ entries: ['tenant=acme'] }, { entries: ['path=/health'] }] },
    });
  });

  it('hits_addend counts that many; over the limit is OVER_LIMIT and charges nothing else', () => {
    expect(step('second').statuses[0]).toMatchObject({ code: 'OK', limit_remaining: 0 });
    expect(step('over')).toMatchObject({ overall_code: 'OVER_LIMIT', statuses: [{ code: 'OVER_LIMIT' }, { code: 'OK', limit_remaining: 3 }] });
    // globex's grant in the denied request was given back (its status says what is left without
    // it), and a hits_addend of 0 only checks.
    expect(step('check').statuses[0]).toMatchObject({ code: 'OK', limit_remaining: 3 });
  });

  it('a limit override in the descriptor applies', () => {
    expect(step('override').statuses[0]).toMatchObject({ code: 'OK', current_limit: { name: '', requests_per_unit: 7, unit: 'HOUR' }, limit_remaining: 6 });
  });

  it('an unknown domain limits nothing; bad requests are INVALID_ARGUMENT', () => {
    expect(step('unknown_domain')).toMatchObject({ overall_code: 'OK', statuses: [{ code: 'OK', current_limit: null }] });
    expect(step('empty_domain')).toMatchObject({ code: 'INVALID_ARGUMENT', details: expect.stringContaining('domain') });
    expect(step('no_descriptors')).toMatchObject({ code: 'INVALID_ARGUMENT', details: expect.stringContaining('descriptors') });
  });

  it('a * in the middle of a value matches, and share_threshold shares its budget', () => {
    expect(step('wildcard_first').statuses[0]).toMatchObject({ code: 'OK', current_limit: { name: 'api-v1' }, limit_remaining: 1 });
    expect(step('wildcard_shared').statuses[0]).toMatchObject({ code: 'OK', current_limit: { name: 'api-v1' }, limit_remaining: 0 });
    expect(step('wildcard_miss').statuses[0]).toMatchObject({ code: 'OK', current_limit: null });
  });

  it('quota_mode: OVER_LIMIT only when every descriptor in quota mode is over; metadata of those that passed, as dynamic metadata', () => {
    expect(step('quota_both_pass')).toMatchObject({
      overall_code: 'OK',
      dynamic_metadata: { domain: 'py', metadata: { tier: 'free', limits: { daily: 100, burst: 2 } } },
    });
    const oneOver = step('quota_one_over');
    expect(oneOver).toMatchObject({ overall_code: 'OK', statuses: [{ code: 'OVER_LIMIT' }, { code: 'OK', limit_remaining: 3 }] });
    expect(oneOver.dynamic_metadata.metadata).toEqual({ tier: 'trial', limits: { daily: 10, burst: 2 } });
  });

  it('grpc.health.v1 answers SERVING for ratelimit, the name envoyproxy/ratelimit registers', () => {
    expect(step('health_ratelimit').status).toBe('SERVING');
  });
});

describe('the same client, against a sidecar set up by envoyproxy/ratelimit environment variables (envoy.upstream_env)', () => {
  let shadowing: SidecarProcess;
  let shadowStep: (name: string) => Step;

  beforeAll(async () => {
    shadowing = await startSidecar(`envoy:\n  config_dir: ${configDir({ 'py.yaml': DOMAIN })}\n  upstream_env: true\n`, {
      SHADOW_MODE: 'true',
      LIMIT_RESPONSE_HEADERS_ENABLED: 'true',
      LIMIT_LIMIT_HEADER: 'X-RateLimit-Limit',
      LIMIT_REMAINING_HEADER: 'X-RateLimit-Remaining',
      LIMIT_RESET_HEADER: 'X-RateLimit-Reset',
    });
    shadowStep = await runPythonClient(SCRIPT, shadowing.address, stubs);
  });
  afterAll(async () => {
    await shadowing?.stop();
  });

  it('SHADOW_MODE: the request over the limit is OK and goes ahead; its descriptor still says OVER_LIMIT', () => {
    expect(shadowStep('over')).toMatchObject({ overall_code: 'OK', statuses: [{ code: 'OVER_LIMIT', limit_remaining: 0 }, { code: 'OK', limit_remaining: 2 }] });
  });

  it('LIMIT_*_HEADER name the headers', () => {
    expect(shadowStep('first').headers).toEqual({ 'X-RateLimit-Limit': '3', 'X-RateLimit-Remaining': '2', 'X-RateLimit-Reset': expect.stringMatching(/^\d+$/) });
    expect(shadowStep('over').headers).toMatchObject({ 'X-RateLimit-Limit': '3', 'X-RateLimit-Remaining': '0' });
  });
});

describe('a Python grpcio client over mutual TLS (server.tls with client_ca_file and client_san)', () => {
  let files: TlsFiles;
  let secured: SidecarProcess;
  let tlsStep: (name: string) => Step;

  beforeAll(async () => {
    files = await makeTlsFiles();
    const good = await issueCertificate(files, 'python-client', { san: 'DNS:localhost' });
    const other = await issueCertificate(files, 'python-elsewhere', { san: 'DNS:elsewhere.example' });
    const tls = `{ cert_file: ${files.certFile}, key_file: ${files.keyFile}, client_ca_file: ${files.caFile}, client_san: localhost }`;
    secured = await startSidecar(`server:\n  tls: ${tls}\nenvoy:\n  config_dir: ${configDir({ 'py.yaml': DOMAIN })}\n`);
    tlsStep = await runPythonSteps(TLS_SCRIPT, [secured.address, stubs, files.caFile, good.certFile, good.keyFile, other.certFile, other.keyFile]);
  });
  afterAll(async () => {
    await secured?.stop();
    files?.remove();
  });

  it('is answered with a certificate carrying the SAN, over grpc.ssl_channel_credentials', () => {
    expect(tlsStep('mtls')).toEqual({ step: 'mtls', overall_code: 'OK', limit_remaining: 2 });
    expect(tlsStep('health').status).toBe('SERVING');
  });

  it('is refused PERMISSION_DENIED with another SAN, and UNAVAILABLE without a certificate', () => {
    expect(tlsStep('wrong_san')).toMatchObject({ code: 'PERMISSION_DENIED', details: expect.stringContaining('server.tls.client_san') });
    expect(tlsStep('no_cert')).toMatchObject({ code: 'UNAVAILABLE' });
  });
});
