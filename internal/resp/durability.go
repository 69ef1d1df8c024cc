package resp

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/tidwall/redcon"
)

// A connection's own durability floor, set with TANDEM.DURABILITY:
//
//	TANDEM.DURABILITY REPLICAS n [TIMEOUT ms]   each later write of this
//	                                             connection is answered only
//	                                             once n followers have it
//	                                             durably
//	TANDEM.DURABILITY DEFAULT                    back to the cluster's mode
//	TANDEM.DURABILITY                            the setting in force
//
// The floor only ever adds to the cluster's commit rule, never replaces
// it: a write is first committed (and made visible) under the cluster's
// mode, exactly as for any other connection, and its reply then also
// waits, as if the write were followed by WAIT n ms, until n followers
// have made it durable, counted as WAIT counts them. If they do not within
// the timeout (the node's write timeout unless TIMEOUT is given) the
// reply is NOREPLICAS with the count reached: the write is committed under
// the cluster's mode and may still reach more followers, so a client must
// not take the error as "not applied". A floor at or below what the mode
// already guarantees costs one check per write. RESET clears the floor.
//
// Writes that log nothing (a DEL of a missing key) have nothing to wait
// for and are answered at once.

// durabilityFloor is a session's TANDEM.DURABILITY setting; the zero value
// is DEFAULT.
type durabilityFloor struct {
	replicas int
	timeout  time.Duration // 0: the server's write timeout
}

func (d durabilityFloor) String() string {
	if d.replicas == 0 {
		return "default"
	}
	s := "replicas " + strconv.Itoa(d.replicas)
	if d.timeout > 0 {
		s += " timeout " + strconv.FormatInt(d.timeout.Milliseconds(), 10)
	}
	return s
}

// tooFewReplicasError is a write answered without its connection's floor:
// it is committed under the cluster's mode, but fewer than want followers
// had it durably when the timeout passed.
type tooFewReplicasError struct{ got, want int }

func (e *tooFewReplicasError) Error() string {
	return fmt.Sprintf("NOREPLICAS tandem: the write is committed under the cluster's mode but only %d of the %d replicas that TANDEM.DURABILITY asks for stored it in time; it may still reach them", e.got, e.want)
}

func cmdDurability(_ *node, c redcon.Conn, sess *Session, args [][]byte) {
	nc := nodeState(sess)
	switch {
	case len(args) == 1:
		c.WriteBulkString(nc.durability.String())
	case len(args) == 2 && eqFold(args[1], "default"):
		nc.durability = durabilityFloor{}
		c.WriteString("OK")
	case len(args) >= 3 && eqFold(args[1], "replicas"):
		n, err := strconv.ParseInt(string(args[2]), 10, 64)
		if err != nil || n < 0 || n > math.MaxInt32 {
			c.WriteError(errNotInteger)
			return
		}
		d := durabilityFloor{replicas: int(n)}
		switch {
		case len(args) == 3:
		case len(args) == 5 && eqFold(args[3], "timeout"):
			ms, err := strconv.ParseInt(string(args[4]), 10, 64)
			if err != nil || ms <= 0 || ms > math.MaxInt64/int64(time.Millisecond) {
				c.WriteError("ERR timeout must be a positive number of milliseconds")
				return
			}
			d.timeout = time.Duration(ms) * time.Millisecond
		default:
			c.WriteError(errSyntax)
			return
		}
		nc.durability = d
		c.WriteString("OK")
	default:
		c.WriteError("ERR syntax: TANDEM.DURABILITY [REPLICAS n [TIMEOUT ms] | DEFAULT]")
	}
}

// awaitFloor holds the reply of a committed write at lsn until the
// session's durability floor holds, or returns why it did not in time.
func (n *node) awaitFloor(sess *Session, lsn uint64) error {
	d := nodeState(sess).durability
	if d.replicas == 0 || lsn == 0 {
		return nil
	}
	timeout := d.timeout
	if timeout == 0 {
		timeout = n.srv.cfg.WriteTimeout
	}
	ctx := sess.enter()
	got := n.b.Wait(ctx, lsn, d.replicas, timeout)
	sess.leave()
	if got >= d.replicas {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return &tooFewReplicasError{got: got, want: d.replicas}
}
