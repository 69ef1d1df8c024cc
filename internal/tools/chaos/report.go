package chaos

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tandemdb/tandem/internal/tools/chaos/checker"
	"github.com/tandemdb/tandem/internal/tools/chaos/history"
)

// Report is the outcome of a chaos run.
type Report struct {
	Seed uint64 `json:"seed"`
	// Ops counts client operations by outcome (final reads excluded).
	Ops           int `json:"ops"`
	OK            int `json:"ok"`
	Failed        int `json:"failed"`
	Unknown       int `json:"unknown"`
	FollowerReads int `json:"follower_reads"`
	// Faults summarises the injected faults per kind, in schedule order of
	// first appearance.
	Faults     []FaultStats        `json:"faults"`
	Violations []checker.Violation `json:"violations"`
	// LostWrites is the number of acknowledged writes missing at the end.
	LostWrites int `json:"lost_writes"`
	// Mode is the commit mode the nodes ran ("" is the server's default,
	// async). In async mode lost writes found in a rollback file
	// (RolledBack of the LostWrites) are allowed, and keys with a
	// rolled-back write that a client saw (RolledBackKeys) are left out
	// of the linearizability and follower-read checks: they lost writes
	// by design, and their history shows it.
	Mode           string `json:"mode,omitempty"`
	RolledBack     int    `json:"rolled_back"`
	RolledBackKeys int    `json:"rolled_back_keys"`
	// Failovers are the control plane's failovers, each with its cause
	// (or none: a false failover, also a violation) and the gap in
	// acknowledged writes around it. Epochs is how many epochs the node
	// logs show led (each by one node, or a violation).
	Failovers      []checker.Failover `json:"failovers"`
	FalseFailovers int                `json:"false_failovers"`
	Epochs         int                `json:"epochs"`
	Recoveries     []checker.Recovery `json:"recoveries"`
	// CatchUps sums up the followers' catch-ups after the heals
	// (checker.CatchUps); a follower behind past the bound is a
	// FollowerBehind violation.
	CatchUps checker.CatchUpStats `json:"catch_ups"`
	// Policies are the sessions' reads per read policy and what the
	// session checks counted (checker.Sessions); counts a policy promises
	// to keep at 0 are also Violations.
	Policies []checker.PolicyStats `json:"policies,omitempty"`
	// Typed counts the typed workload's acknowledged operations by kind
	// (final reads included), empty when it did not run.
	Typed map[history.Kind]int `json:"typed,omitempty"`
	// Digests is the last round of TANDEM.DIGEST answers.
	Digests []checker.Digest `json:"digests"`
	// Dir holds the kept artefacts (history.json, porcupine HTML, node
	// logs) of a failed run, or of any run given --dir; empty when nothing
	// was kept.
	Dir string `json:"dir,omitempty"`
}

// FaultStats is one fault kind's line in the report.
type FaultStats struct {
	Kind         string `json:"kind"`
	Injected     int    `json:"injected"`
	InjectErrors int    `json:"inject_errors"`
	HealErrors   int    `json:"heal_errors"`
	// Recovered faults and their median recovery time (heal to first
	// acknowledged write).
	Recovered      int           `json:"recovered"`
	MedianRecovery time.Duration `json:"median_recovery"`
	// Ops, Violations and LostWrites count what happened while a fault of
	// this kind was the latest one injected: operations invoked from its
	// injection until the next fault's, and the violations (and the
	// acknowledged writes lost) that operations of that span show.
	Ops        int `json:"ops"`
	Violations int `json:"violations"`
	LostWrites int `json:"lost_writes"`
	// Failovers counts the failovers decided while a fault of this kind
	// was the latest one injected.
	Failovers int `json:"failovers"`
}

// noFault is the FaultStats kind of the span before the first fault.
const noFault = "none"

// attribute fills the per-kind Ops, Violations and LostWrites of stats
// (keyed by kind; "none" for the span before the first fault). Faults are in
// injection order, one at a time.
func attribute(h history.History, vs []checker.Violation, fos []checker.Failover, stats map[string]*FaultStats) {
	kindAt := func(t int64) string {
		i, _ := slices.BinarySearchFunc(h.Faults, t, func(f history.FaultEvent, t int64) int {
			if f.Inject <= t {
				return -1
			}
			return 1
		})
		if i == 0 {
			return noFault
		}
		return h.Faults[i-1].Kind
	}
	get := func(kind string) *FaultStats {
		s := stats[kind]
		if s == nil {
			s = &FaultStats{Kind: kind}
			stats[kind] = s
		}
		return s
	}
	for _, o := range h.Ops {
		if !o.Final {
			get(kindAt(o.Call)).Ops++
		}
	}
	for _, v := range vs {
		if v.At == 0 {
			continue
		}
		s := get(kindAt(v.At))
		s.Violations++
		s.LostWrites += v.Lost
	}
	for _, f := range fos {
		get(kindAt(f.At)).Failovers++
	}
}

// Violated reports whether any check found a violation: the run failed.
func (r *Report) Violated() bool { return len(r.Violations) > 0 }

// ByKind counts the violations of each kind.
func (r *Report) ByKind() map[checker.ViolationKind]int {
	m := map[checker.ViolationKind]int{}
	for _, v := range r.Violations {
		m[v.Kind]++
	}
	return m
}

// Check runs every checker on a recorded history, the replicas' final
// digests and the facts collected from the cluster, and builds the report.
// It does not need a cluster: a kept history.json and facts.json can be
// checked again with it. dir receives porcupine's HTML for keys that are
// not linearizable ("" writes none).
func Check(h history.History, digests []checker.Digest, facts Facts, checkTimeout time.Duration, dir string) *Report {
	r := &Report{Seed: h.Seed, Digests: digests, Mode: facts.Mode}
	for _, o := range h.Ops {
		if o.Final {
			continue
		}
		r.Ops++
		switch o.Outcome {
		case history.OK:
			r.OK++
		case history.Failed:
			r.Failed++
		case history.Unknown:
			r.Unknown++
		}
		if o.Follower {
			r.FollowerReads++
		}
	}
	// The register and counter checks see only register and counter
	// operations (hash fields are registers); the typed workload's have
	// their own checks.
	var kv []history.Op
	for _, o := range h.Ops {
		if history.IsKV(o.Kind) {
			kv = append(kv, o)
		}
	}
	checked := kv
	if facts.Async() {
		rolled := checker.ObservedRollbacks(kv, facts.RolledBack)
		r.RolledBackKeys = len(rolled)
		if len(rolled) > 0 {
			checked = nil
			for _, o := range kv {
				if !rolled[o.Key] {
					checked = append(checked, o)
				}
			}
		}
	}
	r.Violations = append(r.Violations, checker.Linearizable(checked, checkTimeout, dir)...)
	for _, o := range h.Ops {
		if !history.IsKV(o.Kind) && o.Outcome == history.OK {
			if r.Typed == nil {
				r.Typed = map[history.Kind]int{}
			}
			r.Typed[o.Kind]++
		}
	}
	r.Violations = append(r.Violations, checker.Functions(h.Ops)...)
	tv := checker.Typed(h.Ops, !facts.Async())
	for _, v := range tv {
		r.LostWrites += v.Lost
	}
	r.Violations = append(r.Violations, tv...)
	dv, losses := checker.DurabilityLosses(kv)
	r.Violations = append(r.Violations, dv...)
	for _, l := range losses {
		r.LostWrites += l.N
	}
	if facts.Async() {
		found, vanished := checker.Vanished(losses, facts.RolledBack)
		r.RolledBack = found
		r.Violations = append(r.Violations, vanished...)
	} else {
		for _, l := range losses {
			r.Violations = append(r.Violations, l.Violation())
		}
	}
	r.Violations = append(r.Violations, checker.FollowerReads(checked)...)
	ps, sv := checker.Sessions(checked)
	r.Policies = ps
	r.Violations = append(r.Violations, sv...)
	if digests != nil {
		r.Violations = append(r.Violations, checker.Replicas(digests)...)
	}
	rs, rv := checker.Recoveries(h)
	r.Recoveries = rs
	r.Violations = append(r.Violations, rv...)
	cs, cv := checker.CatchUps(h)
	r.CatchUps = cs
	r.Violations = append(r.Violations, cv...)

	epochs := map[uint64]bool{}
	for _, l := range facts.Leaderships {
		epochs[l.Epoch] = true
	}
	r.Epochs = len(epochs)
	r.Violations = append(r.Violations, checker.OneLeaderPerEpoch(facts.Leaderships)...)
	fos, fv := checker.Failovers(h, facts.Changes, checker.FailoverWindow)
	r.Failovers = fos
	r.FalseFailovers = len(fv)
	r.Violations = append(r.Violations, fv...)
	if facts.ControlPlane && len(facts.Leaderships) == 0 {
		// The leader-per-epoch check read nothing: it must not pass.
		facts.Errors = append(facts.Errors, "no `role: leader` line in any node log")
	}
	for _, e := range facts.Errors {
		r.Violations = append(r.Violations, checker.Violation{Kind: checker.Unverified, Detail: "facts not collected: " + e})
	}

	byKind := map[string]*FaultStats{}
	var order []string
	for _, f := range h.Faults {
		s := byKind[f.Kind]
		if s == nil {
			s = &FaultStats{Kind: f.Kind}
			byKind[f.Kind] = s
			order = append(order, f.Kind)
		}
		s.Injected++
		if f.InjectErr != "" {
			s.InjectErrors++
		}
		if f.HealErr != "" {
			s.HealErrors++
			// A node that cannot come back (say, it fails to reopen its
			// data after kill -9) is a broken promise, not a harness hiccup.
			r.Violations = append(r.Violations, checker.Violation{Kind: checker.NotRecovered,
				Detail: fmt.Sprintf("healing %s failed: %s", f.Name, f.HealErr)})
		}
	}
	attribute(h, r.Violations, r.Failovers, byKind)
	if s, ok := byKind[noFault]; ok {
		r.Faults = append(r.Faults, *s)
	}
	for _, k := range order {
		s := byKind[k]
		s.MedianRecovery, s.Recovered = checker.Median(rs, k)
		r.Faults = append(r.Faults, *s)
	}
	return r
}

// Print writes the report for people: the seed first, so a failure can be
// replayed.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "seed: %d\n", r.Seed)
	fmt.Fprintf(w, "operations: %d (ok %d, failed %d, unknown %d; follower reads %d)\n", r.Ops, r.OK, r.Failed, r.Unknown, r.FollowerReads)
	if len(r.Faults) == 0 {
		fmt.Fprintln(w, "faults: none")
	} else {
		fmt.Fprintln(w, "faults:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  KIND\tINJECTED\tERRORS\tRECOVERED\tMEDIAN RECOVERY\tFAILOVERS\tOPS\tVIOLATIONS\tACKED WRITES LOST")
		for _, f := range r.Faults {
			med := "-"
			if f.Recovered > 0 {
				med = f.MedianRecovery.Round(time.Millisecond).String()
			}
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%s\t%d\t%d\t%d\t%d\n", f.Kind, f.Injected, f.InjectErrors+f.HealErrors, f.Recovered, med, f.Failovers, f.Ops, f.Violations, f.LostWrites)
		}
		tw.Flush()
	}
	if c := r.CatchUps; c.Measured > 0 {
		fmt.Fprintf(w, "followers caught up after heals: %d measured (bound %v), slowest %v, %d cut short by the next fault\n",
			c.Measured, c.Within, c.Slowest.Round(time.Millisecond), c.Cut)
	}
	r.printFailovers(w)
	r.printPolicies(w)
	if len(r.Typed) > 0 {
		t := r.Typed
		fmt.Fprintf(w, "typed (acknowledged): sets %d SADD, %d SMEMBERS; lists %d RPUSH, %d LRANGE; transfers %d, balance reads %d; queue %d LPUSH, %d BRPOP\n",
			t[history.SAdd], t[history.SRead], t[history.RPush], t[history.LRead], t[history.Transfer], t[history.Balances], t[history.Enqueue], t[history.Dequeue])
	}
	if len(r.Digests) > 0 && checker.Converged(r.Digests) {
		fmt.Fprintf(w, "replicas: %d converged at applied lsn %d\n", len(r.Digests), r.Digests[0].Applied)
	}
	if r.Mode == "" || r.Mode == "async" {
		fmt.Fprintf(w, "acknowledged writes lost: %d (%d of them in rollback files; %d keys with rolled-back writes clients saw, not checked for linearizability)\n",
			r.LostWrites, r.RolledBack, r.RolledBackKeys)
	} else {
		fmt.Fprintf(w, "acknowledged writes lost: %d (mode %s: must be 0)\n", r.LostWrites, r.Mode)
	}
	fmt.Fprintln(w, "(per kind: operations invoked while that fault was the latest injected, and the violations they show;")
	fmt.Fprintln(w, " violations not tied to one operation, such as a non-linearizable key or diverged replicas, count only in the total)")
	if !r.Violated() {
		fmt.Fprintln(w, "violations: none")
		if r.Dir != "" {
			fmt.Fprintf(w, "history kept in %s\n", r.Dir)
		}
		return
	}
	byKind := r.ByKind()
	kinds := make([]string, 0, len(byKind))
	for k, n := range byKind {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
	}
	slices.Sort(kinds)
	fmt.Fprintf(w, "violations: %d (%s)\n", len(r.Violations), strings.Join(kinds, ", "))
	const shown = 20
	for i, v := range r.Violations {
		if i == shown {
			fmt.Fprintf(w, "  ... %d more\n", len(r.Violations)-shown)
			break
		}
		fmt.Fprintf(w, "  %s\n", v)
	}
	if r.Dir != "" {
		fmt.Fprintf(w, "history and artefacts kept in %s\n", r.Dir)
	}
	fmt.Fprintf(w, "replay with --seed %d\n", r.Seed)
}

// printFailovers writes the failover table: each failover's time, nodes,
// epochs, cause, the control plane's detection and promotion times and the
// unavailability the clients saw.
func (r *Report) printFailovers(w io.Writer) {
	if r.Epochs > 0 || len(r.Failovers) > 0 {
		fmt.Fprintf(w, "epochs led: %d; failovers: %d (false %d)\n", r.Epochs, len(r.Failovers), r.FalseFailovers)
	}
	if len(r.Failovers) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  AT\tFROM\tTO\tEPOCH\tCAUSE\tDETECTION\tPROMOTION\tUNAVAILABLE")
	var gaps []time.Duration
	for _, f := range r.Failovers {
		cause := f.Cause
		if f.False {
			cause = "FALSE: " + f.Reason
		}
		un := "until the end"
		if f.Unavailable >= 0 {
			un = f.Unavailable.Round(time.Millisecond).String()
			gaps = append(gaps, f.Unavailable)
		}
		fmt.Fprintf(tw, "  %v\tn%d\tn%d\t%d->%d\t%s\t%s\t%s\t%s\n", time.Duration(f.At).Round(time.Millisecond), f.From, f.To, f.OldEpoch, f.NewEpoch,
			cause, ms(f.Detect), ms(f.Promote), un)
	}
	tw.Flush()
	if len(gaps) > 0 {
		slices.Sort(gaps)
		fmt.Fprintf(w, "unavailability per failover: median %v, max %v\n", gaps[len(gaps)/2].Round(time.Millisecond), gaps[len(gaps)-1].Round(time.Millisecond))
	}
}

func ms(v float64) string {
	if v == 0 {
		return "-"
	}
	return (time.Duration(v * float64(time.Millisecond))).Round(time.Millisecond).String()
}

// printPolicies writes the read-policy table: per policy, the sessions'
// reads, the share a follower served (of the reads sent straight to a
// node), the reads sent through the proxy, and each check's count; a count
// the policy promises to keep at 0 is marked "!" when it is not (it is a
// violation), and a count it does not promise is in parentheses.
func (r *Report) printPolicies(w io.Writer) {
	if len(r.Policies) == 0 {
		return
	}
	fmt.Fprintln(w, "read policies (sessions; counts in parentheses are not promised by the policy):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  POLICY\tSESSIONS\tREADS\tBY FOLLOWERS\tVIA PROXY\tREAD-YOUR-WRITES\tNON-MONOTONIC\tBEYOND BOUND")
	for _, p := range r.Policies {
		cell := func(check string, n int) string {
			switch {
			case check == "bound" && !strings.HasPrefix(p.Policy, "bounded"):
				return "-"
			case !slices.Contains(p.Promised, check):
				return fmt.Sprintf("(%d)", n)
			case n > 0:
				return fmt.Sprintf("%d !", n)
			}
			return "0"
		}
		share := "-"
		if direct := p.Reads - p.ProxyReads; direct > 0 {
			share = fmt.Sprintf("%d%%", p.FollowerReads*100/direct)
		}
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%s\t%d\t%s\t%s\t%s\n", p.Policy, p.Sessions, p.Reads, share, p.ProxyReads,
			cell("ryw", p.RYW), cell("monotonic", p.NonMonotonic), cell("bound", p.BeyondBound))
	}
	tw.Flush()
}
