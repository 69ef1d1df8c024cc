// Package commitbench is the commit-mode benchmark (`tandem bench
// commit`): the throughput and latency of durable, replicated writes in
// each of tandem's commit modes, side by side with peer systems at
// comparable durability, in one run on one machine.
//
// Every target gets the same load (Load): Clients concurrent clients, each
// writing one key at a time, a random key of Keyspace with a ValueSize-byte
// value, for Warmup (not measured) and then Duration. A write counts when
// the target acknowledged it under the rule its Describe line names.
// Targets are started fresh one after another, so they never share the
// cores, and stopped after their run.
package commitbench
