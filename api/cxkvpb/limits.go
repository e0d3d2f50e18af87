package cxkvpb

// MaxMessageBytes is the largest gRPC message a member or the SDK sends or
// accepts, in both directions: the one limit both sides are configured with
// (grpc.MaxRecvMsgSize/MaxSendMsgSize on the server,
// grpc.MaxCallRecvMsgSize/MaxCallSendMsgSize on the client). The cluster
// keeps every answer it can produce below it: Txn results (checked in
// Apply), List pages and Watch batches (bounded by bytes as well as count),
// and results kept for a retry. Peer batches stay below it too.
const MaxMessageBytes = 16 << 20
