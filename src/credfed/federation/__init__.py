"""Federation: partner descriptors and key rotation, fork evidence, and the
trust decisions a node takes about other origins. Pure: no grpc, no storage."""
