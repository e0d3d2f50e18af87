// Package invariants gates extra assertions that are too costly, or too
// paranoid, for production but cheap enough for tests. They are compiled in
// when the binary is built with the race detector or with the "invariants"
// build tag (go test -tags invariants), as Pebble's internal/invariants does.
//
// Use the constant, so the compiler drops the check entirely when it is off:
//
//	if invariants.Enabled && applied < prev {
//		panic(...)
//	}
package invariants
