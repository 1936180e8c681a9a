// Another language over the real socket: Debian's python3-grpcio, with stubs generated from the
// repo's protos at test time by Debian's protoc and grpc_python_plugin. A client script prints
// one JSON object per line, each with a `step` name, and the test asserts on those steps.
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { packageRoot } from '../../src/paths.js';

const PYTHON = '/usr/bin/python3'; // Debian's, with python3-grpcio; not a pyenv python on PATH
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
function pythonEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONDONTWRITEBYTECODE: '1', PYTHONNOUSERSITE: '1' };
  for (const name of ['PYTHONPATH', 'PYTHONHOME', 'http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'grpc_proxy', 'GRPC_PROXY']) delete env[name];
  return env;
}

/** Runs a client script against a sidecar and returns its steps by name. */
export async function runPythonClient(script: string, address: string, stubs: string): Promise<(name: string) => Step> {
  let stdout: string;
  try {
    ({ stdout } = await promisify(execFile)(PYTHON, [script, address, stubs], { env: pythonEnv(), timeout: 30_000 }));
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
