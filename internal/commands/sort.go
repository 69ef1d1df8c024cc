package commands

import (
	"bytes"
	"slices"

	"github.com/tandemdb/tandem/internal/keyspace"
)

// SORT and SORT_RO, as Redis 7's sort.c: the elements of a list, set or
// sorted set, sorted by themselves or by the values of other keys (BY
// pattern), as numbers or strings (ALPHA), windowed (LIMIT), mapped to
// other keys' values (GET pattern), and returned or stored as a list
// (STORE, SORT only). Differences: none in the replies; like Redis, the
// whole collection is read to sort it, and the elements read count
// against max-reply-bytes (a sort of more than a reply may hold is
// refused, not built).

var errSortScore = newError("One or more scores can't be converted into double")

// sortArgs is a parsed SORT.
type sortArgs struct {
	by         []byte // nil: by the element itself
	dontSort   bool   // BY a pattern without '*'
	offset     int64
	count      int64 // -1: to the end
	gets       [][]byte
	desc       bool
	alpha      bool
	store      []byte
	limitGiven bool
}

func parseSort(args [][]byte, readOnly bool) (sortArgs, error) {
	s := sortArgs{count: -1}
	for i := 2; i < len(args); i++ {
		left := len(args) - i - 1
		switch a := args[i]; {
		case eqFold(a, "asc"):
			s.desc = false
		case eqFold(a, "desc"):
			s.desc = true
		case eqFold(a, "alpha"):
			s.alpha = true
		case eqFold(a, "limit") && left >= 2:
			off, ok1 := parseInt(args[i+1])
			cnt, ok2 := parseInt(args[i+2])
			if !ok1 || !ok2 {
				return s, ErrNotInteger
			}
			s.offset, s.count, s.limitGiven = off, cnt, true
			i += 2
		case eqFold(a, "store") && left >= 1 && !readOnly:
			s.store = args[i+1]
			i++
		case eqFold(a, "by") && left >= 1:
			s.by = args[i+1]
			// A pattern that names no element sorts nothing (Redis's
			// "BY nosort").
			s.dontSort = bytes.IndexByte(s.by, '*') < 0
			i++
		case eqFold(a, "get") && left >= 1:
			s.gets = append(s.gets, args[i+1])
			i++
		default:
			return s, ErrSyntax
		}
	}
	return s, nil
}

// sortLookup is Redis's lookupKeyByPattern: "#" is the element itself;
// else the pattern's first '*' is replaced by the element to name a key
// whose string value it is, or, with "->field" after the '*', the value
// of that field of the hash at the key. Nil when the pattern has no '*',
// the key is missing or of another type.
func sortLookup(v View, pattern, elem []byte) ([]byte, bool, error) {
	if len(pattern) == 1 && pattern[0] == '#' {
		return elem, true, nil
	}
	star := bytes.IndexByte(pattern, '*')
	if star < 0 {
		return nil, false, nil
	}
	keyPat, field := pattern, []byte(nil)
	if f := bytes.Index(pattern[star+1:], []byte("->")); f >= 0 && star+1+f+2 < len(pattern) {
		keyPat, field = pattern[:star+1+f], pattern[star+1+f+2:]
	}
	key := make([]byte, 0, len(keyPat)-1+len(elem))
	key = append(append(append(key, keyPat[:star]...), elem...), keyPat[star+1:]...)
	val, ok, err := v.Get(key)
	if err != nil || !ok {
		return nil, false, err
	}
	if field == nil {
		if val.Type != keyspace.TypeString {
			return nil, false, nil
		}
		return val.Data, true, nil
	}
	if val.Type != keyspace.TypeHash {
		return nil, false, nil
	}
	return v.Sub(key, val.Version, field)
}

// sortElems reads the elements SORT works on: a list in order, a set's
// members, a sorted set's members by score; a list's and a sorted set's
// reversed for desc (DESC when not sorted: Redis's order then). Each
// counts against b. It returns the key's type too (0: no such key).
func sortElems(v View, key []byte, desc bool, b *budget) ([][]byte, keyspace.Type, error) {
	val, ok, err := v.Get(key)
	if err != nil || !ok {
		return nil, 0, err
	}
	var out [][]byte
	keep := func(e []byte) bool {
		if !b.add(len(e)) {
			return false
		}
		out = append(out, bytes.Clone(e))
		return true
	}
	switch val.Type {
	case keyspace.TypeList:
		l, ok, err := getList(v, key)
		if err != nil || !ok {
			return nil, val.Type, err
		}
		err = eachElement(v, l.key, l.meta, l.head, 0, l.size(), func(e []byte, _ bool) bool { return keep(e) })
		if desc {
			slices.Reverse(out)
		}
		return out, val.Type, err
	case keyspace.TypeSet:
		return out, val.Type, v.SubScan(key, val.Version, nil, func(m, _ []byte) bool { return keep(m) })
	case keyspace.TypeZSet:
		sp := zspec{kind: zByRank, lo: 0, hi: int64(val.Size) - 1}
		return out, val.Type, zeach(v, key, val, &sp, desc, func(_ float64, m []byte) bool { return keep(m) })
	}
	return nil, val.Type, errWrongType
}

type sortItem struct {
	elem  []byte
	score float64
	by    []byte // ALPHA with BY: the value sorted by (nil: missing)
	hasBy bool
}

func execSort(ctx *Ctx, v View, args [][]byte) (Result, error) {
	return sortCommand(ctx, v, args, false)
}

func execSortRO(ctx *Ctx, v View, args [][]byte) (Result, error) {
	return sortCommand(ctx, v, args, true)
}

func sortCommand(ctx *Ctx, v View, args [][]byte, readOnly bool) (Result, error) {
	s, err := parseSort(args, readOnly)
	if err != nil {
		return Result{}, err
	}
	b := newBudget(ctx)
	elems, typ, err := sortElems(v, args[1], s.desc && s.dontSort, &b)
	if err == nil {
		err = b.err()
	}
	if err != nil {
		return Result{}, err
	}
	if s.dontSort && s.store != nil && typ == keyspace.TypeSet {
		// A set's order is no order: stored, it is sorted (Redis forces
		// ALPHA there so replicas agree; tandem's set order is already
		// its members' bytes, so this changes no reply).
		s.dontSort, s.alpha, s.by = false, true, nil
	}
	items := make([]sortItem, len(elems))
	for i, e := range elems {
		items[i].elem = e
	}
	if !s.dontSort {
		for i := range items {
			it := &items[i]
			val, ok := it.elem, true
			if s.by != nil {
				if val, ok, err = sortLookup(v, s.by, it.elem); err != nil {
					return Result{}, err
				}
				it.by, it.hasBy = val, ok
			}
			if !s.alpha && ok {
				f, good := parseSortScore(val)
				if !good {
					return Result{}, errSortScore
				}
				it.score = f
			}
		}
		byPattern := s.by != nil
		slices.SortStableFunc(items, func(x, y sortItem) int {
			var c int
			switch {
			case !s.alpha:
				switch {
				case x.score < y.score:
					c = -1
				case x.score > y.score:
					c = 1
				default:
					c = bytes.Compare(x.elem, y.elem)
				}
			case byPattern:
				switch {
				case !x.hasBy && !y.hasBy:
					c = 0
				case !x.hasBy:
					c = -1
				case !y.hasBy:
					c = 1
				default:
					c = bytes.Compare(x.by, y.by)
				}
			default:
				c = bytes.Compare(x.elem, y.elem)
			}
			if s.desc {
				return -c
			}
			return c
		})
	}
	start, end := sortWindow(s, int64(len(items)))
	window := items[start:end]

	var out [][]byte // the reply's elements (nil ones are nil replies)
	var present []bool
	if len(s.gets) == 0 {
		for _, it := range window {
			out = append(out, it.elem)
			present = append(present, true)
		}
	} else {
		rb := newBudget(ctx)
		for _, it := range window {
			for _, g := range s.gets {
				val, ok, err := sortLookup(v, g, it.elem)
				if err != nil {
					return Result{}, err
				}
				if !rb.add(len(val)) {
					return Result{}, rb.err()
				}
				if ok {
					val = bytes.Clone(val)
				}
				out = append(out, val)
				present = append(present, ok)
			}
		}
	}
	if s.store == nil {
		reply := make(Array, len(out))
		for i, e := range out {
			if present[i] {
				reply[i] = Bulk(e)
			} else {
				reply[i] = Null
			}
		}
		return Result{Reply: reply}, nil
	}
	t := txn{v: v}
	if old, ok, err := t.view().Get(s.store); err != nil {
		return Result{}, err
	} else if ok {
		t.del(s.store, old)
	}
	if len(out) > 0 {
		ver, err := newVersion(v)
		if err != nil {
			return Result{}, err
		}
		l := list{key: s.store, meta: Value{Type: keyspace.TypeList, Version: ver}, head: keyspace.ListStartIndex}
		vals := make([][]byte, len(out))
		for i, e := range out {
			vals[i] = e
			if !present[i] {
				vals[i] = []byte{} // a missing GET is stored as "", as Redis does
			}
		}
		l.push(&t, false, vals)
		l.save(&t, true)
	}
	return t.result(Int(int64(len(out))))
}

// sortWindow is LIMIT's [start, end) over n sorted elements, clamped as
// Redis clamps it.
func sortWindow(s sortArgs, n int64) (int64, int64) {
	if !s.limitGiven {
		return 0, n
	}
	start := max(s.offset, 0)
	if start >= n {
		return n, n
	}
	end := n
	if s.count >= 0 && start+s.count < n {
		end = start + s.count
	}
	return start, end
}

// parseSortScore parses a value SORT sorts numerically, as Redis's strtod
// with its checks: leading space allowed, the whole rest a number, no
// NaN, no overflow.
func parseSortScore(b []byte) (float64, bool) {
	b = bytes.TrimLeft(b, " \t\n\v\f\r")
	return parseScore(b)
}
