package checker

import "fmt"

// Digest is one node's answer to TANDEM.DIGEST: its applied LSN and the
// sha256 of its whole keyspace at that LSN (hex), or the error it gave.
type Digest struct {
	Node    int    `json:"node"`
	Applied uint64 `json:"applied"`
	Sum     string `json:"sum"`
	Err     string `json:"err,omitempty"`
}

// Replicas compares the digests taken once writes stopped and every fault
// was healed. The caller polls until every node reports the same applied
// LSN (or gives up) and passes the last round. Nodes at the same applied
// LSN must have the same digest; nodes that never reached the same LSN, or
// did not answer, are ReplicasNotConverged: a replica that cannot catch up
// is as much a failure as one that diverged.
func Replicas(ds []Digest) []Violation {
	var vs []Violation
	var ref *Digest
	for i, d := range ds {
		if d.Err != "" {
			vs = append(vs, Violation{Kind: ReplicasNotConverged, Node: d.Node, Detail: "no digest: " + d.Err})
			continue
		}
		if ref == nil {
			ref = &ds[i]
			continue
		}
		switch {
		case d.Applied != ref.Applied:
			vs = append(vs, Violation{Kind: ReplicasNotConverged, Node: d.Node, Detail: fmt.Sprintf(
				"applied lsn %d, n%d is at %d", d.Applied, ref.Node, ref.Applied)})
		case d.Sum != ref.Sum:
			vs = append(vs, Violation{Kind: ReplicaDiverged, Node: d.Node, Detail: fmt.Sprintf(
				"digest %s differs from n%d's %s at applied lsn %d", short(d.Sum), ref.Node, short(ref.Sum), d.Applied)})
		}
	}
	return vs
}

// Converged reports whether every node answered with the same applied LSN;
// pollers stop there and hand the round to Replicas.
func Converged(ds []Digest) bool {
	for _, d := range ds {
		if d.Err != "" || d.Applied != ds[0].Applied {
			return false
		}
	}
	return len(ds) > 0
}

func short(s string) string {
	if len(s) > 16 {
		return s[:16]
	}
	return s
}
