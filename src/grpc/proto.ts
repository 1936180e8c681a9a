// Loads the .proto contracts at run time: proto/ is the only source of message shapes.
import { loadPackageDefinition, type GrpcObject, type ServiceDefinition } from '@grpc/grpc-js';
import { loadSync, type Options, type PackageDefinition } from '@grpc/proto-loader';
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
