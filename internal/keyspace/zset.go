package keyspace

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Sorted-set sub-keys. A sorted set's rows, inside its (key, version) span,
// come in two families told apart by their first byte, so that OpDrop's
// one range delete removes both:
//
//	'i' score(8, order-preserving) member -> empty   (the score index)
//	'm' member                            -> score(8, same encoding)
//
// ZSCORE reads one member row; a range by score or by rank seeks in the
// index and reads the rows it returns. Members of equal score sit in the
// index in byte order of the member, which is Redis's order and what
// BYLEX ranges need. The metadata row's Size counts members (each member
// has one row of each family).
const (
	ZSetIndexFamily  = 'i'
	ZSetMemberFamily = 'm'
)

// ScoreLen is the length of an encoded score.
const ScoreLen = 8

// AppendScore appends the order-preserving encoding of score to dst: as
// unsigned big-endian numbers, encodings order as the scores do, -inf <
// negatives < 0 < positives < +inf. -0 is encoded as 0 (Redis compares them
// equal, so equal-score members order by member). NaN is not a score:
// commands refuse it, and encoding it panics.
func AppendScore(dst []byte, score float64) []byte {
	if score != score {
		panic("keyspace: NaN score")
	}
	if score == 0 {
		score = 0 // -0 becomes +0
	}
	b := math.Float64bits(score)
	if b&(1<<63) != 0 {
		b = ^b // negatives: larger magnitude sorts lower
	} else {
		b |= 1 << 63 // non-negatives above every negative
	}
	return binary.BigEndian.AppendUint64(dst, b)
}

// DecodeScore reads a score encoded by AppendScore.
func DecodeScore(b []byte) (float64, error) {
	if len(b) != ScoreLen {
		return 0, fmt.Errorf("%w: score of %d bytes", ErrCorrupt, len(b))
	}
	u := binary.BigEndian.Uint64(b)
	if u&(1<<63) != 0 {
		u &^= 1 << 63
	} else {
		u = ^u
	}
	f := math.Float64frombits(u)
	if f != f {
		return 0, fmt.Errorf("%w: NaN score", ErrCorrupt)
	}
	return f, nil
}

// ZSetMemberSub is the sub-key of member's member row.
func ZSetMemberSub(member []byte) []byte {
	return append(append(make([]byte, 0, 1+len(member)), ZSetMemberFamily), member...)
}

// ZSetIndexSub is the sub-key of member's index row at score.
func ZSetIndexSub(score float64, member []byte) []byte {
	dst := AppendScore(append(make([]byte, 0, 1+ScoreLen+len(member)), ZSetIndexFamily), score)
	return append(dst, member...)
}

// ZSetIndexFrom is the first index sub-key of a member with score
// >= score (SubScan's start for an inclusive lower bound).
func ZSetIndexFrom(score float64) []byte { return ZSetIndexSub(score, nil) }

// ZSetIndexAfter is the first index sub-key of a member with score >
// score (an exclusive lower bound): the next encoding up, which no row of
// score starts with.
func ZSetIndexAfter(score float64) []byte {
	k := ZSetIndexFrom(score)
	u := binary.BigEndian.Uint64(k[1:]) + 1 // +inf's encoding is far from the top
	binary.BigEndian.PutUint64(k[1:], u)
	return k
}

// ParseZSetIndexSub splits an index sub-key. The member aliases sub.
func ParseZSetIndexSub(sub []byte) (score float64, member []byte, err error) {
	if len(sub) < 1+ScoreLen || sub[0] != ZSetIndexFamily {
		return 0, nil, fmt.Errorf("%w: sorted set index sub-key of %d bytes", ErrCorrupt, len(sub))
	}
	score, err = DecodeScore(sub[1 : 1+ScoreLen])
	return score, sub[1+ScoreLen:], err
}
