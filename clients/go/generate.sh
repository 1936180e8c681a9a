#!/bin/sh
# Generates the Go code for proto/sluice/v1/sluice.proto into sluicev1/ (or into DIR/sluicev1/
# with `generate.sh DIR`), with Debian's protoc, protoc-gen-go and protoc-gen-go-grpc:
#   apt-get install protobuf-compiler protoc-gen-go protoc-gen-go-grpc
# The generated files are committed; test/clients/go.test.ts fails when they differ from what
# this script makes, so run it after every change to the proto.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$(cd "${1:-$here}" && pwd)
module=github.com/sluice/sluice/clients/go

rm -f "$out"/sluicev1/*.pb.go
cd "$root"
# Pinned to Debian's binaries: another protoc or plugin on PATH writes other version lines.
/usr/bin/protoc -I proto \
  --plugin=protoc-gen-go=/usr/bin/protoc-gen-go --go_out="$out" --go_opt=module=$module \
  --plugin=protoc-gen-go-grpc=/usr/bin/protoc-gen-go-grpc --go-grpc_out="$out" --go-grpc_opt=module=$module \
  proto/sluice/v1/sluice.proto
