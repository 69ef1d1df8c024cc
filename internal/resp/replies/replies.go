// Package replies declares, once, the error replies whose meaning a client
// acts on: each one's text and what it says about the command, applied or
// not. internal/resp sends these texts (its error table, errors.go, takes
// them from here); package client sorts an error reply with Match to decide
// whether a command may be sent again. A leaf package, so that the public
// client links no server code.
package replies

import "strings"

// Outcome is what an error reply says about the command it answers.
type Outcome int

const (
	// Answer: the reply is the command's answer (bad input, wrong type,
	// an internal error, or a reply not in Table): sending the command
	// again gets the same.
	Answer Outcome = iota
	// NotApplied: the command was certainly not applied (the node does
	// not lead, is loading, or refused it before sequencing it).
	NotApplied
	// MaybeApplied: the command may have been applied, or may yet be.
	MaybeApplied
)

func (o Outcome) String() string {
	switch o {
	case Answer:
		return "answer"
	case NotApplied:
		return "not applied"
	case MaybeApplied:
		return "maybe applied"
	}
	return "Outcome(?)"
}

// The texts. Where Redis has a text for the case it is Redis's, byte for
// byte: clients match on them (redis-py raises ReadOnlyError on READONLY,
// go-redis retries LOADING, READONLY, MASTERDOWN and TRYAGAIN).
const (
	ReadOnly = "READONLY You can't write against a read only replica."
	// NotLeader answers a write on a node that is between roles: a
	// READONLY on purpose (the remedy is the same: find the leader; the
	// write was not applied), with a tail for the operator.
	NotLeader = ReadOnly + " (tandem: this node is not the leader)"
	Loading   = "LOADING Redis is loading the dataset in memory"
	// Fenced is Redis's reply of a replica that may not serve stale
	// data; resp adds " (tandem: this node is fenced[: reason])".
	Fenced = "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."
	// NoReplicas is Redis's text for a write min-replicas refuses; tandem
	// sends it for a write not committed within the write timeout (it may
	// commit later) and, with another tail, for a write whose
	// connection's durability floor was not met (committed).
	NoReplicas = "NOREPLICAS Not enough good replicas to write."
	// Overloaded: too many writes wait for commit; this one was not
	// sequenced. TRYAGAIN is Redis Cluster's "retry later".
	Overloaded = "TRYAGAIN tandem: too many writes waiting for commit; retry"
	// LeadershipLost: the leader stopped between sequencing the write
	// and committing it. Deliberately not READONLY: it may yet commit.
	LeadershipLost = "UNCERTAIN tandem: the leader stopped before this write committed; it may or may not take effect"
	// Busy: a script has run in the leader's sequencer past the busy
	// threshold; the write was not sequenced. Redis's text.
	Busy = "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
	// BusyFunction: Busy while what runs is a function.
	BusyFunction = "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."
	// ShuttingDown: the server's Close canceled the command, which may
	// or may not have been applied.
	ShuttingDown = "ERR internal error: server shutting down"
	// ReadElsewhere begins the reply to a read this node cannot serve
	// under the session's read policy now (the reason follows): another
	// node can, at the latest the leader. A proxy or the tandem client
	// goes elsewhere on it. TRYAGAIN, so it is NotApplied (go-redis
	// retries it on the same node, which may have caught up by then).
	ReadElsewhere = "TRYAGAIN tandem: read elsewhere: "
	// PositionLost begins the reply to a read whose session position the
	// leader's history does not hold (the detail follows): no node will
	// serve it. An Answer: sending the read again gets the same.
	PositionLost = "ERR tandem: the session's position is not in this cluster's history (lost in a failover under async commit, or never written): "
)

// Table sorts error replies by prefix: a code word and a space, or a
// whole text where the code (ERR) does not say enough. The first match
// counts; a reply that matches none is an Answer.
var Table = []struct {
	Prefix  string
	Outcome Outcome
}{
	{"READONLY ", NotApplied},
	{"MASTERDOWN ", NotApplied},
	{"TRYAGAIN ", NotApplied},
	{"LOADING ", NotApplied},
	{"BUSY ", NotApplied},
	{"UNCERTAIN ", MaybeApplied},
	{"NOREPLICAS ", MaybeApplied},
	{ShuttingDown, MaybeApplied},
}

// Match returns what the error reply msg says about its command.
func Match(msg string) Outcome {
	for _, r := range Table {
		if strings.HasPrefix(msg, r.Prefix) {
			return r.Outcome
		}
	}
	return Answer
}
