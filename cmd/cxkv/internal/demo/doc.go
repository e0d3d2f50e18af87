// Package demo is what `cxkv demo` runs: a local cluster of real `cxkv
// server` processes (StartCluster, ServeCluster), worker processes that book
// hotel rooms or move money through the Go SDK (RunWorker), and a runner
// (Run) that starts both, shows progress and ends with a Verdict.
//
// The verdict trusts no summary. Each worker appends what it did to its own
// JSON-lines record (Recorder): an intent before every write, then the
// outcome with the log index it applied at and the fencing token of the lock
// it held. Check reads those records and the store as it is at the end and
// tests the scenario's invariants (no room sold twice, money neither made
// nor lost, fencing tokens never going back), so a worker killed mid-write
// or a lost update shows up as a failed check, not as a wrong number.
//
// The package uses only the public client API and the cxkv binary; it
// imports no server package, as any application built on cxkv would.
package demo
