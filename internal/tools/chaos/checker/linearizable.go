package checker

import (
	"fmt"
	"hash/fnv"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/tandemdb/tandem/internal/tools/chaos/history"
)

// regInput and regOutput are the porcupine values of the register model.
type regInput struct {
	write bool
	value string
}

type regOutput struct {
	found bool
	value string
}

// regState is a register's value; set is false while the key is absent.
type regState struct {
	set   bool
	value string
}

// RegisterModel is a key written with SET (unique values) and read with
// GET. A read of an absent key returns found=false.
var RegisterModel = porcupine.Model{
	Init: func() any { return regState{} },
	Step: func(state, input, output any) (bool, any) {
		s, in := state.(regState), input.(regInput)
		if in.write {
			// A write's output carries nothing; an unknown write is
			// pending until the end of the history, which porcupine
			// treats as "took effect at any time after its call, or not
			// before anything that was observed".
			return true, regState{set: true, value: in.value}
		}
		out := output.(regOutput)
		return out.found == s.set && out.value == s.value, s
	},
	Hash: func(state any) uint64 {
		s := state.(regState)
		h := fnv.New64a()
		h.Write([]byte(strconv.FormatBool(s.set) + s.value))
		return h.Sum64()
	},
	DescribeOperation: func(input, output any) string {
		in := input.(regInput)
		if in.write {
			return "set " + in.value
		}
		out := output.(regOutput)
		if !out.found {
			return "get -> nil"
		}
		return "get -> " + out.value
	},
	DescribeState: func(state any) string {
		s := state.(regState)
		if !s.set {
			return "nil"
		}
		return s.value
	},
}

// ctrInput and ctrOutput are the porcupine values of the counter model.
type ctrInput struct{ incr bool }

type ctrOutput struct {
	// known is false for an INCR of unknown outcome: its result was never
	// seen, so any result is allowed.
	known bool
	n     int64
}

// CounterModel is a key changed only with INCR and read with GET (an absent
// key reads as 0).
var CounterModel = porcupine.Model{
	Init: func() any { return int64(0) },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(int64), input.(ctrInput), output.(ctrOutput)
		if in.incr {
			return !out.known || out.n == s+1, s + 1
		}
		return out.n == s, s
	},
	Hash: func(state any) uint64 { return uint64(state.(int64)) },
	DescribeOperation: func(input, output any) string {
		in, out := input.(ctrInput), output.(ctrOutput)
		if in.incr {
			if !out.known {
				return "incr -> ?"
			}
			return fmt.Sprintf("incr -> %d", out.n)
		}
		return fmt.Sprintf("get -> %d", out.n)
	},
	DescribeState: func(state any) string { return strconv.FormatInt(state.(int64), 10) },
}

// Operations converts one key's ops into porcupine operations and picks the
// model. Follower reads are left out (they may be stale), except those of
// sessions under the linearizable policy, which must not be; failed operations
// are left out (they did not happen), and so are the typed workload's
// (checked by Typed); reads of unknown outcome are left out
// (they observed nothing); writes of unknown outcome are kept with an
// infinite return time, as porcupine expects of operations that may take
// effect at any time after their call.
func Operations(ops []history.Op) (porcupine.Model, []porcupine.Operation, error) {
	model := RegisterModel
	counter := history.IsCounter(ops)
	if counter {
		model = CounterModel
	}
	var out []porcupine.Operation
	for i, o := range ops {
		if !history.IsKV(o.Kind) || (o.Follower && o.Policy != "linearizable") || o.Outcome == history.Failed {
			continue
		}
		if o.Kind == history.Read && o.Outcome != history.OK {
			continue
		}
		ret := o.Return
		if o.Outcome == history.Unknown {
			ret = math.MaxInt64
		}
		p := porcupine.Operation{ClientId: o.Client, Call: o.Call, Return: ret, Metadata: i}
		switch {
		case o.Kind == history.Write && counter:
			return model, nil, fmt.Errorf("checker: key %s has both SET and INCR", o.Key)
		case o.Kind == history.Write:
			p.Input, p.Output = regInput{write: true, value: o.Value}, regOutput{}
		case o.Kind == history.Read && counter:
			n, err := counterValue(o)
			if err != nil {
				return model, nil, err
			}
			p.Input, p.Output = ctrInput{}, ctrOutput{known: true, n: n}
		case o.Kind == history.Read:
			p.Input, p.Output = regInput{}, regOutput{found: o.Found, value: o.Result}
		case o.Kind == history.Incr:
			p.Input, p.Output = ctrInput{incr: true}, ctrOutput{known: o.Outcome == history.OK, n: o.N}
		}
		out = append(out, p)
	}
	return model, out, nil
}

// counterValue is what a GET of a counter returned (absent is 0).
func counterValue(o history.Op) (int64, error) {
	if !o.Found {
		return 0, nil
	}
	n, err := strconv.ParseInt(o.Result, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("checker: counter %s read %q: %w", o.Key, o.Result, err)
	}
	return n, nil
}

// Linearizable checks each key's leader history with porcupine, keys in
// parallel, giving porcupine at most timeout per key (0: no limit). For a
// key that is not linearizable, it writes porcupine's HTML visualisation to
// dir/<key>.html when dir is not empty. A key porcupine could not decide in
// time is reported as Inconclusive.
func Linearizable(ops []history.Op, timeout time.Duration, dir string) []Violation {
	byKey := history.ByKey(ops)
	keys := sortedKeys(byKey)
	results := make([][]Violation, len(keys))
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i, key := range keys {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i] = checkKey(key, byKey[key], timeout, dir)
		}()
	}
	wg.Wait()
	var vs []Violation
	for _, r := range results {
		vs = append(vs, r...)
	}
	return vs
}

func checkKey(key string, ops []history.Op, timeout time.Duration, dir string) []Violation {
	model, pops, err := Operations(ops)
	if err != nil {
		return []Violation{{Kind: NotLinearizable, Key: key, Detail: err.Error()}}
	}
	model.DescribeOperationMetadata = func(info any) string { return ops[info.(int)].String() }
	res, info := porcupine.CheckOperationsVerbose(model, pops, timeout)
	switch res {
	case porcupine.Ok:
		return nil
	case porcupine.Unknown:
		return []Violation{{Kind: Inconclusive, Key: key, Detail: fmt.Sprintf("porcupine gave up after %v on %d operations", timeout, len(pops))}}
	}
	v := Violation{Kind: NotLinearizable, Key: key, Detail: fmt.Sprintf("%d operations have no linearization", len(pops))}
	if dir != "" {
		path := filepath.Join(dir, fileName(key)+".html")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			v.Detail += "; visualisation: " + err.Error()
		} else if err := porcupine.VisualizePath(model, info, path); err != nil {
			v.Detail += "; visualisation: " + err.Error()
		} else {
			v.File = path
		}
	}
	return []Violation{v}
}

// fileName makes a key safe to use as a file name.
func fileName(key string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == ':' || r == os.PathSeparator || r < ' ' {
			return '_'
		}
		return r
	}, key)
}
