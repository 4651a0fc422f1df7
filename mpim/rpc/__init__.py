"""Service calls between processes: grpc.aio servers and pooled, balanced clients."""
