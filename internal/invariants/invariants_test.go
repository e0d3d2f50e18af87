package invariants

import "testing"

// The Makefile's race run must see the checks switched on; a plain run must
// not pay for them. This test pins that wiring.
func TestEnabledFollowsBuildTags(t *testing.T) {
	if Enabled != raceOrTagged {
		t.Fatalf("Enabled = %v, but the build has race/invariants = %v", Enabled, raceOrTagged)
	}
}
