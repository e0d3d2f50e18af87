package bench

import "testing"

// TestMain lets the tests run this test binary as the slow-sync shim.
func TestMain(m *testing.M) {
	MaybeRunSlowSyncShim()
	m.Run()
}
