// Loads the .proto contracts at run time: proto/ is the only source of message shapes.
import { join } from 'node:path';
import { loadPackageDefinition, type GrpcObject, type ServiceDefinition } from '@grpc/grpc-js';
import { loadSync, type Options, type PackageDefinition } from '@grpc/proto-loader';
import protobuf, { type Type } from 'protobufjs';
import { protoDir } from '../paths.js';

export const LOADER_OPTIONS: Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [protoDir],
};

export const sluicePackage: PackageDefinition = loadSync('sluice/v1/sluice.proto', LOADER_OPTIONS);

/**
 * Every contract the server serves, loaded together: reflection resolves the imports they share
 * (google/protobuf/*) only within one package definition.
 */
export const servedPackage: PackageDefinition = loadSync(['sluice/v1/sluice.proto', 'envoy/service/ratelimit/v3/rls.proto'], LOADER_OPTIONS);

export function serviceOf(pkg: PackageDefinition, name: string): ServiceDefinition {
  const grpcObject: GrpcObject = loadPackageDefinition(pkg);
  let node: any = grpcObject;
  for (const part of name.split('.')) node = node?.[part];
  if (!node?.service) throw new Error(`no service ${name} in the loaded protos`);
  return node.service as ServiceDefinition;
}

/**
 * The Envoy RLS messages as protobufjs types, for their JSON mapping (envoy.http_listen's /json).
 * Loaded as proto-loader loads them: the same files, field names as written.
 */
export const envoyMessages = (() => {
  const root = new protobuf.Root();
  // google/protobuf/* never reach this: protobufjs has them built in.
  root.resolvePath = (_origin, target) => join(protoDir, target);
  root.loadSync('envoy/service/ratelimit/v3/rls.proto', { keepCase: true });
  root.resolveAll();
  return {
    request: root.lookupType('envoy.service.ratelimit.v3.RateLimitRequest') as Type,
    response: root.lookupType('envoy.service.ratelimit.v3.RateLimitResponse') as Type,
  };
})();
