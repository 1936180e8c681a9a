"""The sluice.v1 messages and gRPC stub, generated from proto/sluice/v1/sluice.proto.

For calls the client does not wrap (AcquireStream, Inspect)::

    from sluice_client.v1 import sluice_pb2, sluice_pb2_grpc

The files beside this one are made by ``clients/python/generate.sh``; do not edit them.
"""
