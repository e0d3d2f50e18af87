package raftnode

import "time"

// SetProposalBudget sets the bytes of writes in flight through each member
// started afterwards, and returns what restores it.
func SetProposalBudget(n int64) (restore func()) {
	old := maxProposalBytes
	maxProposalBytes = n
	return func() { maxProposalBytes = old }
}

// SetCensusEvery lets a test see the state's counts without waiting out the
// cache; it returns the function that restores the default.
func SetCensusEvery(d time.Duration) func() {
	old := censusEvery
	censusEvery = d
	return func() { censusEvery = old }
}

// SetCommitNoticeDelay changes how long a leader holds an entry-less append
// (commitnotice.go), for members started after it; it returns the function
// that restores the default. Members must be stopped before it runs.
func SetCommitNoticeDelay(d time.Duration) func() {
	old := commitNoticeDelay
	commitNoticeDelay = d
	return func() { commitNoticeDelay = old }
}

// ReportLeaderGone hands the member's Ready loop what its transport reports
// when the stream to peer broke and peer's port refused a connection.
func (n *Node) ReportLeaderGone(peer uint64) { n.reportLeaderGone(peer) }

// StopCutConnections says whether Stop had to cut connections that were
// still open when its grace ran out, rather than every stream ending by
// itself.
func (n *Node) StopCutConnections() bool { return n.stopCut }

// HaltRemoved halts the member as it halts when it learns of its own
// removal, whether or not its peers have applied that removal yet.
func (n *Node) HaltRemoved() { n.halt(n.removedError()) }
