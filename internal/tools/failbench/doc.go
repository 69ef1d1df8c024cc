// Package failbench is the failover benchmark (`tandem bench failover`): it
// kills the leader of a replicated store with kill -9 while clients write,
// and measures what the clients see.
//
// A run takes one or more targets (a Target: Redis Sentinel here, tandem
// later) through the same trials. A trial is:
//
//  1. wait until the target is healthy (every replica back and caught up);
//  2. start the workload: Clients workers, each writing unique keys
//     fb:<trial>:<worker>:<seq> with ValueSize-byte values through the
//     target's client, one write at a time, recording for every
//     acknowledged write its key, invoke time and acknowledgement time;
//     errors are counted by kind (ErrKind) and not retried: the worker
//     backs off briefly and writes its next key;
//  3. after LoadBefore, kill -9 the leader's process (the kill time is
//     recorded);
//  4. wait for the first acknowledgement of a write invoked after the kill
//     (the new leader is taking writes), then RestartDelay, then restart the
//     killed process so it rejoins as a replica, then LoadAfter more load;
//  5. stop the workload, wait until the target is healthy again, and read
//     every acknowledged key back from the current leader.
//
// Per trial it reports:
//
//   - write unavailability: the first acknowledgement of a write invoked
//     after the kill minus the last acknowledgement of a write invoked
//     before it (Unavailability). Only the new leader can acknowledge a
//     write invoked after the old one died, so this is the gap between the
//     old leader's last acknowledgement and the new leader's first, as the
//     clients saw it;
//   - detection and promotion times (kill to failure declared, kill to new
//     leader in place) when the target reports them (FailoverReporter);
//   - acknowledged writes lost, counted exactly: every key is unique, every
//     acknowledgement is recorded, and every acknowledged key is read back
//     after the trial; a key that is missing or holds another value is lost.
//
// The summary gives median and max of each time, lost writes per trial and in
// total, and, when more than one target ran, the ratio of each target's
// figures to the first target's.
//
// The Redis Sentinel target (NewSentinel) runs redis-server (primary + 2
// replicas, appendonly yes, appendfsync always) and 3 sentinels (quorum 2,
// down-after-milliseconds 1000) from the binaries in PATH; it installs
// nothing (bench/failover.sh does).
package failbench
