// Another language over the real socket: Debian's python3-grpcio, with stubs generated from the
// repo's protos at test time by Debian's protoc and grpc_python_plugin, or with the sluice_client
// package (clients/python) installed from its wheel. A client script prints one JSON object per
// line, each with a `step` name, and the test asserts on those steps.
import { execFile, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { packageRoot } from '../../src/paths.js';
import { run } from './command.js';

export const PYTHON = '/usr/bin/python3'; // Debian's, with python3-grpcio; not a pyenv python on PATH
const PYTHON_CLIENT = join(packageRoot, 'clients', 'python');
/** What a build or a run from the source tree leaves there; never part of a build's input. */
const BUILD_LEFTOVERS = new Set(['build', 'dist', '__pycache__', '.mypy_cache']);
const PACKAGING_HINT = 'apt-get install -y python3-build python3-setuptools python3-wheel python3-venv';
const PROTOC = '/usr/bin/protoc';
const GRPC_PYTHON_PLUGIN = '/usr/bin/grpc_python_plugin';
const INSTALL_HINT = 'apt-get install -y python3-grpcio python3-protobuf protobuf-compiler protobuf-compiler-grpc';

export interface Step {
  step: string;
  [field: string]: any;
}

/** Where google/protobuf/*.proto live (Debian: libprotobuf-dev or protobuf-compiler). */
function wellKnownTypesInclude(): string {
  const found = ['/usr/include', '/usr/local/include', '/usr/share/protobuf/include'].find((dir) =>
    existsSync(join(dir, 'google', 'protobuf', 'wrappers.proto')),
  );
  if (!found) throw new Error(`google/protobuf/wrappers.proto not found; ${INSTALL_HINT}`);
  return found;
}

/** Python stubs for `protos` (paths under proto/), in a fresh temporary directory. */
export function generatePythonStubs(protos: string[]): string {
  for (const tool of [PYTHON, PROTOC, GRPC_PYTHON_PLUGIN]) {
    if (!existsSync(tool)) throw new Error(`${tool} is missing; ${INSTALL_HINT}`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'sluice-pystubs-'));
  const protoc = spawnSync(
    PROTOC,
    ['-I', 'proto', '-I', wellKnownTypesInclude(), `--python_out=${dir}`, `--grpc_python_out=${dir}`, `--plugin=protoc-gen-grpc_python=${GRPC_PYTHON_PLUGIN}`, ...protos],
    { cwd: packageRoot, encoding: 'utf8' },
  );
  if (protoc.status !== 0) throw new Error(`protoc failed (${protoc.status}): ${protoc.stderr}`);
  return dir;
}

/** The environment without anything that would send Python elsewhere (pyenv, proxies). */
export function pythonEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONDONTWRITEBYTECODE: '1', PYTHONNOUSERSITE: '1' };
  for (const name of ['PYTHONPATH', 'PYTHONHOME', 'http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'grpc_proxy', 'GRPC_PROXY']) delete env[name];
  return env;
}

/** Runs a client script against a sidecar and returns its steps by name. */
export function runPythonClient(script: string, address: string, stubs: string): Promise<(name: string) => Step> {
  return runPythonSteps(script, [address, stubs]);
}

export interface PythonRunOptions {
  /** The interpreter; Debian's by default. */
  python?: string;
  /** Default 30 s. */
  timeoutMs?: number;
}

/** Runs `script ARGS...` and returns its steps by name. */
export async function runPythonSteps(script: string, args: string[], options: PythonRunOptions = {}): Promise<(name: string) => Step> {
  let stdout: string;
  try {
    ({ stdout } = await promisify(execFile)(options.python ?? PYTHON, [script, ...args], { env: pythonEnv(), timeout: options.timeoutMs ?? 30_000 }));
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${script} failed: ${e.message}\nstdout:\n${e.stdout}\nstderr:\n${e.stderr}`);
  }
  const lines = stdout.split('\n').filter((line) => line.trim() !== '').map((line) => JSON.parse(line) as Step);
  const steps = new Map(lines.map((line) => [line.step, line]));
  return (name) => {
    const found = steps.get(name);
    if (!found) throw new Error(`${script} printed no "${name}" step; printed: ${[...steps.keys()].join(', ')}`);
    return found;
  };
}

export interface InstalledPythonClient {
  /** The venv's python: it imports sluice_client from the wheel, grpc and protobuf from Debian. */
  python: string;
  wheel: string;
  /** Holds the venv, the wheel and the build's copy of the source; remove it when done. */
  dir: string;
}

/**
 * sluice_client as users install it: its wheel built offline by Debian's `python3 -m build` (from a
 * copy of clients/python, so the build leaves nothing in the tree), installed with pip into a venv
 * that sees Debian's grpcio and protobuf (--system-site-packages).
 */
export async function installPythonClient(): Promise<InstalledPythonClient> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-pyclient-'));
  const source = join(dir, 'source');
  cpSync(PYTHON_CLIENT, source, { recursive: true, filter: (path) => !BUILD_LEFTOVERS.has(basename(path)) && !path.endsWith('.egg-info') });
  const env = pythonEnv();
  const built = join(dir, 'wheel');
  await run(PYTHON, ['-m', 'build', '--wheel', '--no-isolation', '--outdir', built, source], { env }).catch((err: Error) => {
    throw new Error(`${err.message}\n(needs ${PACKAGING_HINT})`);
  });
  const wheels = readdirSync(built).filter((name) => name.endsWith('.whl'));
  if (wheels.length !== 1) throw new Error(`expected one wheel in ${built}, found: ${wheels.join(', ')}`);
  const wheel = join(built, wheels[0]!);
  const venv = join(dir, 'venv');
  await run(PYTHON, ['-m', 'venv', '--system-site-packages', venv], { env });
  const python = join(venv, 'bin', 'python');
  await run(python, ['-m', 'pip', 'install', '--no-index', '--no-deps', '--disable-pip-version-check', '--no-input', wheel], { env });
  return { python, wheel, dir };
}
