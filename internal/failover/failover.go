// Package failover is tandem's whole failover rule, pure: no goroutines,
// clocks, etcd or network. Time is a parameter and every input is a value,
// so each part is tested on tables and scripts. Two drivers carry it out:
// the orchestrator (probes, decisions, topology changes) and the leader
// node's agent (its sync set).
//
// # The parts, in the order a failure meets them
//
//  1. Probe (probe.go): the orchestrator's reading of one Heartbeat's
//     result. An answer feeds the node's detector and the marks of a
//     leader that does not lead (NotLead) or does not answer clients
//     (NotAnswering); a probe refused at once (gRPC Unavailable: nothing
//     listens, the process is gone) counts toward Refused; any other
//     failure (a timeout: slow, paused, cut off) resets it, since it
//     proves nothing about the process. A failed probe is retried after a
//     quarter interval.
//  2. Decide (decide.go): a leader is failed over on any of four
//     triggers:
//     (a) it answers but has not led the topology's epoch for
//     Rules.NotLeadingAfter;
//     (b) it leads but has answered nothing (its lease unconfirmed: cut
//     off from etcd) for Rules.NotAnsweringAfter;
//     (c) two probes in a row were refused (the process is gone);
//     (d) its detector suspects it and its probes have gone unanswered
//     for Rules.MinSilence (a leader saturated by clients answers late
//     while alive; longer when it, the orchestrator, or every follower
//     answered late lately: an overloaded machine).
//     (a) and (b) are the leader's own word; (c) and (d) are vetoed by any
//     reachable follower of it that heard its stream within
//     Rules.FollowerSilence, counted from what the follower reported plus
//     the age of its report (NodeView.HeardLeaderAgo): a cut between the
//     orchestrator and the leader alone is not a failure, and a leader too
//     busy to answer probes promptly still streams to its followers,
//     where a stopped process goes silent on both channels at once. A
//     follower's late answer (1.5 of its probe periods old or more,
//     NodeView.AnswerLate) that still vouched when it was given holds
//     (d) until its next answer or until it is no longer fresh: the
//     answer's age is then the follower's own lateness, not the leader's
//     silence (on a loaded machine all answer late together). An
//     orchestrator that has just become active acts on (d) only once a
//     member other than the leader has answered a probe sent since (or
//     none answers at all): the veto is only as current as the
//     followers' answers, and a standby's are up to a second old. A
//     topology that does not decode is never acted on.
//  3. Eligibility (View.Candidates): a reachable node with a role may be
//     chosen; in sync and semisync only a member of the published sync set
//     (they alone hold every acknowledged write).
//  4. Ranking (Choose): the highest durable (epoch, LSN), then priority,
//     then the preferred zone (View.PreferredZone), then id; priority 0
//     is never chosen. A preference never outranks durability.
//  5. In quorum K the failover takes two steps, because the old leader
//     may still commit through followers that have not heard of the new
//     epoch: Decide returns KindFence (raise the epoch with no leader;
//     Topology.Fenced names the old one), then Elect chooses, once F-K+1
//     of the F other members (or the old leader itself) report the new
//     epoch, the most advanced of them: every write acknowledged on K
//     members is on one of them.
//  6. The sync set (syncset.go): under sync and semisync the leader keeps
//     it so that every acknowledged write is durable on a member of the set
//     etcd holds for the epoch: a member is published before it counts,
//     and dropped locally first, published as dropped only once the
//     remaining members hold the commit LSN of that moment.
//
// The lease that fences an old leader is the one part that is not here: it
// is a property of the node (node's agent and replication.Lease), checked
// where an answer is given.
package failover
