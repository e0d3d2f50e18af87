//go:build invariants || race

package invariants

const raceOrTagged = true
