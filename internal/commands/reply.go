package commands

import (
	"math"
	"strconv"
)

// Reply is a RESP reply value. The concrete types below are the only ones.
type Reply interface{ isReply() }

type (
	// SimpleString is +OK style.
	SimpleString string
	// Int is :n.
	Int int64
	// Bulk is $n data; a nil Bulk is the null reply.
	Bulk []byte
	// Array is *n items; a nil Array is the null array.
	Array []Reply
	// ErrorReply is -CODE message; the text starts with its code.
	ErrorReply string
	// Map is a RESP3 map (written as a flat array in RESP2).
	Map []Reply
	// Pairs is a flat list of pairs, written as an array of two-element
	// arrays in RESP3 and flat in RESP2 (HRANDFIELD ... WITHVALUES).
	Pairs []Reply
	// Double is a score: a bulk string in RESP2, a double in RESP3, both
	// as FormatDouble writes it.
	Double float64
	// Set is a RESP3 set (~), written as an array in RESP2 (SMEMBERS).
	Set []Reply
	// Bulks is an array of bulk strings, none null: what Array of Bulk
	// elements writes, without an allocation per element (a Bulk in a
	// Reply is one), for the commands that return many (LRANGE).
	Bulks [][]byte
	// BulkPair is an array of two bulk strings, neither null: the
	// [key, element] a blocking pop answers (BLPOP, BRPOP), which every
	// job of a queue gets. Stored in the Reply as it is, one allocation;
	// a Bulks of two was two (its elements and its slice header).
	BulkPair [2][]byte
	// ScorePair is an array of a member (a bulk string, not null) and its
	// score (as Double writes it): what ZPOPMIN and ZPOPMAX answer
	// without a count. Stored in the Reply as it is, one allocation; an
	// Array{Bulk, Double} was three (the array, each element boxed).
	ScorePair struct {
		Member []byte
		Score  float64
	}
)

func (SimpleString) isReply() {}
func (Int) isReply()          {}
func (Bulk) isReply()         {}
func (Array) isReply()        {}
func (ErrorReply) isReply()   {}
func (Map) isReply()          {}
func (Pairs) isReply()        {}
func (Double) isReply()       {}
func (Set) isReply()          {}
func (Bulks) isReply()        {}
func (BulkPair) isReply()     {}
func (ScorePair) isReply()    {}

// OK is the +OK reply.
const OK = SimpleString("OK")

// Null is the null bulk reply.
var Null = Bulk(nil)

// FormatDouble renders d as Redis 7.0's addReplyDouble does: "%.17g" (1.1
// is "1.1000000000000001"), infinities as "inf" and "-inf".
func FormatDouble(d float64) []byte {
	switch {
	case math.IsInf(d, 1):
		return []byte("inf")
	case math.IsInf(d, -1):
		return []byte("-inf")
	}
	return strconv.AppendFloat(nil, d, 'g', 17, 64)
}
