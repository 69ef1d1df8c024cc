package checker

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"

	"github.com/tandemdb/tandem/internal/tools/chaos/history"
)

// The checks of the typed workload (see package workload's typed.go): sets,
// lists, transfers and the queue. Hash fields are registers and are checked
// by the register checks. strict is false in async mode, where an
// acknowledged write may be rolled back by design: only the promises that
// hold whatever the mode are checked then (no element never added, no
// duplicate inside one read, the transfers' sum).

// The typed workload's violation kinds.
const (
	// MissingElement: a read of a set or list lacks an element whose add
	// was acknowledged before the read began, or one an earlier read
	// (finished before it began) returned. On the final read it is a lost
	// write (Violation.Lost).
	MissingElement ViolationKind = "missing-element"
	// ListOrder: a list read holds an element twice, is not a prefix of
	// the longest read (the list is append-only), or orders two pushes
	// against real time (one acknowledged before the other began).
	ListOrder ViolationKind = "list-order"
	// SumChanged: a transaction of reads of every account (on any node,
	// during the run or after it) saw a sum other than the opening total:
	// some transfer was seen half done.
	SumChanged ViolationKind = "sum-changed"
	// DuplicatePop: a job was popped twice, popped and still queued at
	// the end, or queued twice.
	DuplicatePop ViolationKind = "duplicate-pop"
	// LostJob: acknowledged pushes of jobs are neither popped nor queued
	// at the end, more of them than pops of unknown outcome could have
	// taken.
	LostJob ViolationKind = "lost-job"
)

// Typed runs every check of the typed workload.
func Typed(ops []history.Op, strict bool) []Violation {
	var vs []Violation
	vs = append(vs, Sets(ops, strict)...)
	vs = append(vs, Lists(ops, strict)...)
	vs = append(vs, Transfers(ops)...)
	vs = append(vs, Queue(ops, strict)...)
	return vs
}

// ofKinds groups the ops of the given kinds by key.
func ofKinds(ops []history.Op, kinds ...history.Kind) map[string][]history.Op {
	m := map[string][]history.Op{}
	for _, o := range ops {
		if slices.Contains(kinds, o.Kind) {
			m[o.Key] = append(m[o.Key], o)
		}
	}
	return m
}

// elements indexes a key's adds (SAdd, RPush or Enqueue) by their unique
// value.
func elements(ops []history.Op, kind history.Kind) map[string]history.Op {
	m := map[string]history.Op{}
	for _, o := range ops {
		if o.Kind == kind {
			m[o.Value] = o
		}
	}
	return m
}

// inventedIn returns the first item of r that no add of adds (acknowledged
// or unknown) could have put there by the time r returned.
func inventedIn(items []string, r history.Op, adds map[string]history.Op) (string, bool) {
	for _, it := range items {
		a, ok := adds[it]
		if !ok || a.Outcome == history.Failed || a.Call > r.Return {
			return it, true
		}
	}
	return "", false
}

// missingFrom returns the acknowledged adds of adds that completed before
// r began and whose value r's items lack.
func missingFrom(items []string, r history.Op, adds map[string]history.Op) []history.Op {
	in := make(map[string]bool, len(items))
	for _, it := range items {
		in[it] = true
	}
	var miss []history.Op
	for _, a := range adds {
		if before(a, r) && !in[a.Value] {
			miss = append(miss, a)
		}
	}
	slices.SortFunc(miss, func(x, y history.Op) int { return cmp.Compare(x.Call, y.Call) })
	return miss
}

// okReads are the OK reads of a key of the given kind, and its last OK
// final read (nil if none).
func okReads(ops []history.Op, kind history.Kind) (reads []history.Op, final *history.Op) {
	for i, o := range ops {
		if o.Kind == kind && o.Outcome == history.OK {
			reads = append(reads, o)
			if o.Final {
				final = &ops[i]
			}
		}
	}
	return reads, final
}

func countOK(adds map[string]history.Op) int {
	n := 0
	for _, a := range adds {
		if a.Outcome == history.OK {
			n++
		}
	}
	return n
}

// collection checks what sets and lists share: no read holds an element
// never added, and (strict) every read holds every element acknowledged
// before it began and every element of a read that ended before it began
// (the collection only grows); a key with acknowledged adds and no final
// read is Unverified.
func collection(key string, kops []history.Op, add, read history.Kind, strict bool) []Violation {
	var vs []Violation
	adds := elements(kops, add)
	reads, final := okReads(kops, read)
	slices.SortStableFunc(reads, func(x, y history.Op) int { return cmp.Compare(x.Call, y.Call) })
	// seen is the union of what the reads that returned before r's call
	// returned (byReturn[:next] added); an element in it and not in r went
	// missing. One sweep: linear in the reads' items.
	byReturn := slices.Clone(reads)
	slices.SortFunc(byReturn, func(x, y history.Op) int { return cmp.Compare(x.Return, y.Return) })
	seen := map[string]history.Op{}
	next := 0
	for _, r := range reads {
		for ; next < len(byReturn) && byReturn[next].Return < r.Call; next++ {
			for _, it := range byReturn[next].Items {
				if _, added := adds[it]; added { // an element never added is reported as such
					seen[it] = byReturn[next]
				}
			}
		}
		if it, bad := inventedIn(r.Items, r, adds); bad {
			vs = append(vs, Violation{Kind: NeverWritten, Key: key, Node: r.Node, At: r.Call,
				Detail: fmt.Sprintf("read holds %q, never added by then: %s", it, r)})
		}
		if !strict {
			continue
		}
		if miss := missingFrom(r.Items, r, adds); len(miss) > 0 {
			v := Violation{Kind: MissingElement, Key: key, Node: r.Node, At: r.Call,
				Detail: fmt.Sprintf("read lacks %d elements acknowledged before it began, the first %s: %s", len(miss), miss[0], r)}
			if r.Final {
				v.Lost, v.At = len(miss), miss[len(miss)-1].Call
			}
			vs = append(vs, v)
			continue
		}
		have := make(map[string]bool, len(r.Items))
		for _, it := range r.Items {
			have[it] = true
		}
		gone := ""
		for it := range seen {
			if !have[it] && (gone == "" || it < gone) {
				gone = it
			}
		}
		if gone != "" {
			vs = append(vs, Violation{Kind: MissingElement, Key: key, Node: r.Node, At: r.Call,
				Detail: fmt.Sprintf("read lacks %q, which an earlier read returned (%s): %s", gone, seen[gone], r)})
		}
	}
	if final == nil && countOK(adds) > 0 {
		vs = append(vs, Violation{Kind: Unverified, Key: key, Detail: fmt.Sprintf("%d acknowledged adds but no final read", countOK(adds))})
	}
	return vs
}

// Sets checks each set ("s:N": SAdd of unique members, SRead) as a
// grow-only set: see collection. A read's members are a set: no order is
// checked.
func Sets(ops []history.Op, strict bool) []Violation {
	byKey := ofKinds(ops, history.SAdd, history.SRead)
	var vs []Violation
	for _, key := range sortedKeys(byKey) {
		vs = append(vs, collection(key, byKey[key], history.SAdd, history.SRead, strict)...)
	}
	return vs
}

// Lists checks each list ("l:N": RPush of unique values, LRead) as an
// append-only sequence: what collection checks, no read holds an element
// twice, and (strict) every read is a prefix of the longest one, and two
// pushes appear in real-time order when one was acknowledged before the
// other began.
func Lists(ops []history.Op, strict bool) []Violation {
	byKey := ofKinds(ops, history.RPush, history.LRead)
	var vs []Violation
	for _, key := range sortedKeys(byKey) {
		kops := byKey[key]
		vs = append(vs, collection(key, kops, history.RPush, history.LRead, strict)...)
		reads, _ := okReads(kops, history.LRead)
		var longest []string
		for _, r := range reads {
			if dup, ok := duplicate(r.Items); ok {
				vs = append(vs, Violation{Kind: ListOrder, Key: key, Node: r.Node, At: r.Call, Detail: fmt.Sprintf("%q twice in one read: %s", dup, r)})
			}
			if len(r.Items) > len(longest) {
				longest = r.Items
			}
		}
		if !strict {
			continue
		}
		for _, r := range reads {
			if !slices.Equal(r.Items, longest[:len(r.Items)]) {
				vs = append(vs, Violation{Kind: ListOrder, Key: key, Node: r.Node, At: r.Call,
					Detail: fmt.Sprintf("read is not a prefix of the longest read %v: %s", longest, r)})
			}
		}
		// Real-time order: walking the longest read backwards, the
		// earliest acknowledgement among the later elements must not
		// precede an earlier element's call.
		pushes := elements(kops, history.RPush)
		var first *history.Op
		for i := len(longest) - 1; i >= 0; i-- {
			p, ok := pushes[longest[i]]
			if !ok {
				continue // reported as never written
			}
			if first != nil && before(*first, p) {
				vs = append(vs, Violation{Kind: ListOrder, Key: key, At: p.Call,
					Detail: fmt.Sprintf("%s was acknowledged before %s began, but comes after it", *first, p)})
				break
			}
			if p.Outcome == history.OK && (first == nil || p.Return < first.Return) {
				first = &p
			}
		}
	}
	return vs
}

func duplicate(items []string) (string, bool) {
	seen := make(map[string]bool, len(items))
	for _, it := range items {
		if seen[it] {
			return it, true
		}
		seen[it] = true
	}
	return "", false
}

// Transfers checks the transfer workload: every OK Balances (a transaction
// of reads of every account, on any node, during the run or at the end)
// sums to the total the Accounts operation opened them with, an absent
// account counting 0; a follower's read during the run may find no account
// at all (it had not applied the opening yet). Each node the
// final balances were read on must have answered once (else Unverified),
// so the sum is checked on every replica after the faults.
func Transfers(ops []history.Op) []Violation {
	var total int64
	opened, tried := false, false
	finals := map[int]bool{} // node -> answered
	var vs []Violation
	for _, o := range ops {
		switch {
		case o.Kind == history.Accounts:
			tried = true
			if o.Outcome == history.OK {
				opened, total = true, o.N
			}
		case o.Kind == history.Balances && o.Final:
			finals[o.Node] = finals[o.Node] || o.Outcome == history.OK
		}
	}
	if !tried {
		return nil
	}
	if !opened {
		return []Violation{{Kind: Unverified, Key: workloadAccounts, Detail: "the accounts were never opened"}}
	}
	for _, o := range ops {
		if o.Kind != history.Balances || o.Outcome != history.OK {
			continue
		}
		if o.Follower && !o.Final && !slices.ContainsFunc(o.Items, func(b string) bool { return b != "" }) {
			// A follower that has not applied the opening MSETNX yet
			// (one entry: all accounts or none).
			continue
		}
		var sum int64
		for _, b := range o.Items {
			if b == "" {
				continue // absent: 0
			}
			n, err := strconv.ParseInt(b, 10, 64)
			if err != nil {
				sum = total + 1 // not a balance: the sum cannot hold
				break
			}
			sum += n
		}
		if sum != total {
			where := "during the run"
			if o.Final {
				where = "after the run"
			}
			vs = append(vs, Violation{Kind: SumChanged, Key: workloadAccounts, Node: o.Node, At: o.Call,
				Detail: fmt.Sprintf("balances sum to %d, not %d, %s: %s", sum, total, where, o)})
		}
	}
	nodes := make([]int, 0, len(finals))
	for n := range finals {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	for _, n := range nodes {
		if !finals[n] {
			vs = append(vs, Violation{Kind: Unverified, Key: workloadAccounts, Node: n, Detail: "final balances not read on this node"})
		}
	}
	if len(finals) == 0 {
		vs = append(vs, Violation{Kind: Unverified, Key: workloadAccounts, Detail: "no final balances read on any node"})
	}
	return vs
}

// workloadAccounts is the key Transfer, Balances and Accounts operations
// carry (workload.AccountsKey; checker does not import workload).
const workloadAccounts = "accounts"

// Queue checks the queue (Enqueue of unique jobs, Dequeue, a final
// QueueRead): no pop or final read returns a job never pushed; and
// (strict) no job is popped twice or popped and still queued or queued
// twice, and every acknowledged push is popped (by an OK pop) or still
// queued at the end, except as many as there were pops of unknown outcome
// (each may have taken one, its reply lost). A pop that answered nil (a
// BRPOP's timeout) or failed took nothing: a blocked pop whose leader
// stepped down is answered UNBLOCKED only between pops (Failed), and one
// cut off while its pop was under way gets another error (Unknown).
// Without an OK final read,
// a queue with acknowledged pushes is Unverified.
func Queue(ops []history.Op, strict bool) []Violation {
	byKey := ofKinds(ops, history.Enqueue, history.Dequeue, history.QueueRead)
	var vs []Violation
	for _, key := range sortedKeys(byKey) {
		kops := byKey[key]
		pushes := elements(kops, history.Enqueue)
		popped := map[string]history.Op{}
		unknownPops := 0
		for _, o := range kops {
			if o.Kind != history.Dequeue {
				continue
			}
			if o.Outcome == history.Unknown {
				unknownPops++
			}
			if o.Outcome != history.OK || !o.Found {
				continue
			}
			if _, bad := inventedIn([]string{o.Result}, o, pushes); bad {
				vs = append(vs, Violation{Kind: NeverWritten, Key: key, At: o.Call, Detail: "popped a job never pushed by then: " + o.String()})
			}
			if p, twice := popped[o.Result]; twice && strict {
				vs = append(vs, Violation{Kind: DuplicatePop, Key: key, At: o.Call, Detail: fmt.Sprintf("job popped twice: %s and %s", p, o)})
			}
			popped[o.Result] = o
		}
		_, final := okReads(kops, history.QueueRead)
		if final == nil {
			if n := countOK(pushes); n > 0 {
				vs = append(vs, Violation{Kind: Unverified, Key: key, Detail: fmt.Sprintf("%d acknowledged pushes but no final read", n)})
			}
			continue
		}
		if it, bad := inventedIn(final.Items, *final, pushes); bad {
			vs = append(vs, Violation{Kind: NeverWritten, Key: key, Detail: fmt.Sprintf("queue holds %q, never pushed: %s", it, final)})
		}
		if !strict {
			continue
		}
		if dup, ok := duplicate(final.Items); ok {
			vs = append(vs, Violation{Kind: DuplicatePop, Key: key, Detail: fmt.Sprintf("job %q queued twice at the end: %s", dup, final)})
		}
		queued := map[string]bool{}
		for _, it := range final.Items {
			queued[it] = true
			if p, ok := popped[it]; ok {
				vs = append(vs, Violation{Kind: DuplicatePop, Key: key, At: p.Call, Detail: fmt.Sprintf("job %q popped (%s) and still queued at the end", it, p)})
			}
		}
		var lost []history.Op
		for _, p := range pushes {
			if _, ok := popped[p.Value]; p.Outcome == history.OK && !ok && !queued[p.Value] {
				lost = append(lost, p)
			}
		}
		if len(lost) > unknownPops {
			slices.SortFunc(lost, func(x, y history.Op) int { return cmp.Compare(x.Call, y.Call) })
			last := lost[len(lost)-1]
			vs = append(vs, Violation{Kind: LostJob, Key: key, At: last.Call, Lost: len(lost) - unknownPops,
				Detail: fmt.Sprintf("%d acknowledged jobs neither popped nor queued at the end, %d pops of unknown outcome; the last %s", len(lost), unknownPops, last)})
		}
	}
	return vs
}
