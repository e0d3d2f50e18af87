package cxkvpb

// AuthMetadataKey is the gRPC metadata that carries a client's token, as
// "Bearer <token>": the SDK sets it on every call, a member checks it, and
// a call on the KV.Calls stream carries its value in CallRequest.authorization.
const AuthMetadataKey = "authorization"
