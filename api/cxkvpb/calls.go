package cxkvpb

import "strings"

// CallsOpsHeader is the response header of a KV.Calls stream in which the
// member names, comma-separated, the calls it takes on the stream beyond
// put, delete, txn and get, which every member with the stream takes. A
// member older than a call does not name it and refuses it on the stream,
// so a client sends it there only once the stream's header names it, and
// as a unary call until then. The header arrives with the stream's first
// answer.
const CallsOpsHeader = "cxkv-calls"

// CallsOpList names ListRequest on the stream.
const CallsOpList = "list"

// CallsOps is the header's value for this build: every call it takes
// beyond the first four, comma-separated.
const CallsOps = CallsOpList

// NamesCallsOp reports whether a CallsOpsHeader value names op.
func NamesCallsOp(values []string, op string) bool {
	for _, v := range values {
		for name := range strings.SplitSeq(v, ",") {
			if strings.TrimSpace(name) == op {
				return true
			}
		}
	}
	return false
}
