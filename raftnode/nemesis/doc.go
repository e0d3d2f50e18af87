// Package nemesis holds the in-process nemesis: a 3-member cluster on
// loopback whose peer transport, disks and clocks are fault seams
// (raftnode.Config.WrapTransport, FS, Clock), driven by a seeded schedule
// of partitions, message loss, delay, reordering and duplication, crashes
// that lose unsynced writes, disks that fail, clock jumps and lock-holder
// crashes, while SDK clients write, lock and watch; their histories are
// checked by chaos/workload, the same checks as make chaos. The package
// has only tests.
package nemesis
