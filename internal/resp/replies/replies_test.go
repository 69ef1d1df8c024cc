package replies

import "testing"

func TestMatch(t *testing.T) {
	for msg, want := range map[string]Outcome{
		ReadOnly:  NotApplied,
		NotLeader: NotApplied,
		Loading:   NotApplied,
		Fenced + " (tandem: this node is fenced: lease lost)": NotApplied,
		Overloaded: NotApplied,
		Busy:       NotApplied,
		NoReplicas: MaybeApplied,
		"NOREPLICAS tandem: the write is committed, but only 1 of the 2 replicas": MaybeApplied,
		LeadershipLost:                          MaybeApplied,
		ShuttingDown:                            MaybeApplied,
		"ERR internal error: connection closed": Answer,
		"ERR internal error; see the server log, incident 0badf00d": Answer,
		"ERR syntax error": Answer,
		ReadElsewhere + "the session's read policy is leader":               NotApplied,
		PositionLost + "position 2:12":                                      Answer,
		"WRONGTYPE Operation against a key holding the wrong kind of value": Answer,
		"READONLYX": Answer, // a code word, not a prefix of one
		"":          Answer,
	} {
		if got := Match(msg); got != want {
			t.Errorf("Match(%q) = %v, want %v", msg, got, want)
		}
	}
}
