package cxkvpb

// A member that fails a write says how far the write got, so a client never
// has to guess from the code or the text: the status carries a
// google.rpc.ErrorInfo detail with Domain ErrorDomain and one of the reasons
// below, and metadata MetaMember (the id of the member that answered).
//
// Every Unavailable answer of a member also names the leader that member
// knows, as metadata MetaLeader of its ErrorInfo (absent when it knows
// none); an Unavailable read or watch, which has no write outcome to report,
// carries an ErrorInfo with ReasonUnavailable for it. A client goes straight
// to the named leader instead of trying members in turn.
//
// An error without such a detail did not come from a member's write path: the
// network or gRPC itself failed the call (a refused connection, a stream cut,
// an answer over the client's receive limit). Then only the client knows
// whether its request left it.
const (
	ErrorDomain = "cxkv"

	// ReasonWriteNotApplied: this attempt did not apply and cannot apply
	// later: it never reached the log (refused by validation, no leader to
	// take it, the member stopping before it was handed to Raft), or Apply
	// refused it without writing because the exactly-once table no longer
	// knows the write id. It says nothing about earlier attempts of the same
	// write.
	ReasonWriteNotApplied = "WRITE_NOT_APPLIED"
	// ReasonWriteRefused: the log settled the write as a refusal: Apply
	// refused it and wrote nothing, and a retry with the same write id gets
	// the same answer.
	ReasonWriteRefused = "WRITE_REFUSED"
	// ReasonWriteOutcomeUnknown: the write may be in the log and may apply
	// (or have applied); retry with the same write id to learn its result.
	ReasonWriteOutcomeUnknown = "WRITE_OUTCOME_UNKNOWN"

	// ReasonMemberRemoved: a member was removed from the cluster, the one
	// MetaRemoved names. A member says it when it refuses Raft traffic from
	// a removed member (which stops serving when it reads its own id there:
	// it may not have learnt of its removal from the log), and a removed
	// member says it of itself in every answer until it stops.
	ReasonMemberRemoved = "MEMBER_REMOVED"
	// ReasonNotLeader: a membership change or leader transfer reached a
	// member that is not the leader; send it to the leader.
	ReasonNotLeader = "NOT_LEADER"

	// ReasonUnavailable: the member cannot serve the call now (no leader,
	// stopping, halted); another member, or the same one later, may.
	ReasonUnavailable = "UNAVAILABLE"

	// MetaMember is the metadata key of the answering member's id, in
	// decimal.
	MetaMember = "member"
	// MetaLeader is the metadata key of the leader's member id, in decimal,
	// as the answering member knows it.
	MetaLeader = "leader"
	// MetaRemoved is the metadata key, with ReasonMemberRemoved, of the id
	// of the member that was removed, in decimal.
	MetaRemoved = "removed"
)
