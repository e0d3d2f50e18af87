package raftnode

// SetProposalBudget sets the bytes of writes in flight through each member
// started afterwards, and returns what restores it.
func SetProposalBudget(n int64) (restore func()) {
	old := maxProposalBytes
	maxProposalBytes = n
	return func() { maxProposalBytes = old }
}
