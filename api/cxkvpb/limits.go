package cxkvpb

// MaxMessageBytes is the largest gRPC message a member or the SDK sends or
// accepts, in both directions: the one limit both sides are configured with
// (grpc.MaxRecvMsgSize/MaxSendMsgSize on the server,
// grpc.MaxCallRecvMsgSize/MaxCallSendMsgSize on the client). The cluster
// keeps every answer it can produce below it: Txn results (checked in
// Apply), List pages and Watch batches (bounded by bytes as well as count),
// and results kept for a retry. Peer batches stay below it too.
const MaxMessageBytes = 16 << 20

// MaxCallsInFlight is the most calls one KV.Calls stream has in flight: a
// member reads no further message of a stream with that many calls
// unanswered, and the SDK sends no more on it until one is answered. So a
// stream costs a member at most this many calls plus one HTTP/2 stream
// window of unread bytes, and a cancel the SDK sends is never stuck behind
// calls the member has not read.
const MaxCallsInFlight = 256
