package commands

import "math"

var (
	errLCSType    = newError("The specified keys must contain string values")
	errLCSLenIdx  = newError("If you want both the length and indexes, please just use IDX.")
	errLCSTooLong = newError("String too long for LCS")
	errLCSMemory  = newError("Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len")
)

// execLCS is LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN],
// Redis's dynamic programme: its table of (len1+1)*(len2+1) uint32s is
// refused past MaxValueLen bytes (Redis's proto-max-bulk-len rule), so one
// command's memory stays bounded. The matches are walked back from the
// strings' ends exactly as Redis walks them, so IDX lists the same ranges
// in the same order.
func execLCS(_ *Ctx, v View, args [][]byte) (Result, error) {
	var ab [2][]byte
	for i, k := range args[1:3] {
		val, ok, err := v.Get(k)
		if err != nil {
			return Result{}, err
		}
		if ok && !val.IsString() {
			return Result{}, errLCSType
		}
		ab[i] = val.Data
	}
	a, b := ab[0], ab[1]
	var getLen, getIdx, withMatchLen bool
	var minMatch int64
	for j := 3; j < len(args); j++ {
		switch opt := args[j]; {
		case eqFold(opt, "idx"):
			getIdx = true
		case eqFold(opt, "len"):
			getLen = true
		case eqFold(opt, "withmatchlen"):
			withMatchLen = true
		case eqFold(opt, "minmatchlen") && j+1 < len(args):
			n, ok := parseInt(args[j+1])
			if !ok {
				return Result{}, ErrNotInteger
			}
			minMatch = max(n, 0)
			j++
		default:
			return Result{}, ErrSyntax
		}
	}
	if getIdx && getLen {
		return Result{}, errLCSLenIdx
	}
	if len(a) >= math.MaxUint32-1 || len(b) >= math.MaxUint32-1 {
		return Result{}, errLCSTooLong
	}
	alen, blen := len(a), len(b)
	if cells := uint64(alen+1) * uint64(blen+1); cells*4 > MaxValueLen {
		return Result{}, errLCSMemory
	}
	w := blen + 1
	lcs := make([]uint32, (alen+1)*w)
	for i := 1; i <= alen; i++ {
		for j := 1; j <= blen; j++ {
			switch {
			case a[i-1] == b[j-1]:
				lcs[i*w+j] = lcs[(i-1)*w+j-1] + 1
			default:
				lcs[i*w+j] = max(lcs[(i-1)*w+j], lcs[i*w+j-1])
			}
		}
	}
	total := lcs[alen*w+blen]
	if getLen {
		return Result{Reply: Int(total)}, nil
	}
	result := make([]byte, total)
	idx := total
	matches := Array{}
	// A range is [aStart, aEnd] in a and [bStart, bEnd] in b; aStart ==
	// alen means no range is open.
	aStart, aEnd, bStart, bEnd := alen, 0, 0, 0
	for i, j := alen, blen; i > 0 && j > 0; {
		emit := false
		if a[i-1] == b[j-1] {
			result[idx-1] = a[i-1]
			switch {
			case aStart == alen:
				aStart, aEnd, bStart, bEnd = i-1, i-1, j-1, j-1
			case aStart == i && bStart == j:
				aStart--
				bStart--
			default:
				emit = true
			}
			if aStart == 0 || bStart == 0 {
				emit = true
			}
			idx--
			i--
			j--
		} else {
			if lcs[(i-1)*w+j] > lcs[i*w+j-1] {
				i--
			} else {
				j--
			}
			if aStart != alen {
				emit = true
			}
		}
		if emit {
			matchLen := int64(aEnd - aStart + 1)
			if getIdx && (minMatch == 0 || matchLen >= minMatch) {
				m := Array{Array{Int(aStart), Int(aEnd)}, Array{Int(bStart), Int(bEnd)}}
				if withMatchLen {
					m = append(m, Int(matchLen))
				}
				matches = append(matches, m)
			}
			aStart = alen
		}
	}
	if getIdx {
		return Result{Reply: Map{Bulk("matches"), matches, Bulk("len"), Int(total)}}, nil
	}
	return Result{Reply: Bulk(result)}, nil
}
