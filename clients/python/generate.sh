#!/usr/bin/env bash
# Regenerates sluice_client's stubs (sluice_client/v1/) from the repository's proto/ with Debian's
# protoc and grpc_python_plugin (apt: protobuf-compiler protobuf-compiler-grpc).
#
#   clients/python/generate.sh [OUT_DIR]     OUT_DIR defaults to src/sluice_client/v1
#
# protoc names modules after the proto's path, so the gRPC stub imports `sluice.v1.sluice_pb2`; the
# package ships it as `sluice_client.v1.sluice_pb2`, so that import is made relative. The proto keeps
# its own file name, sluice/v1/sluice.proto, in protobuf's descriptor pool (see README.md, "Raw stubs").
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
proto="$(cd "$here/../../proto" && pwd)"
out="${1:-$here/src/sluice_client/v1}"
protoc=/usr/bin/protoc
plugin=/usr/bin/grpc_python_plugin
for tool in "$protoc" "$plugin"; do
  [ -x "$tool" ] || { echo "$tool is missing: apt-get install -y protobuf-compiler protobuf-compiler-grpc" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$protoc" -I "$proto" --python_out="$work" --pyi_out="$work" --grpc_python_out="$work" \
  --plugin=protoc-gen-grpc_python="$plugin" sluice/v1/sluice.proto

generated="$work/sluice/v1"
# Fails loudly if a newer plugin words these lines differently, instead of shipping a broken import.
grep -q '^from sluice\.v1 import sluice_pb2 as ' "$generated/sluice_pb2_grpc.py"
sed -i 's/^from sluice\.v1 import sluice_pb2 as /from . import sluice_pb2 as /' "$generated/sluice_pb2_grpc.py"
grep -q "'sluice\.v1\.sluice_pb2', globals()" "$generated/sluice_pb2.py"
sed -i "s/'sluice\.v1\.sluice_pb2', globals()/'sluice_client.v1.sluice_pb2', globals()/" "$generated/sluice_pb2.py"

mkdir -p "$out"
cp "$generated/sluice_pb2.py" "$generated/sluice_pb2.pyi" "$generated/sluice_pb2_grpc.py" "$out/"
