package commands

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
	// Set is a RESP3 set (~), written as an array in RESP2 (SMEMBERS).
	Set []Reply
)

func (SimpleString) isReply() {}
func (Int) isReply()          {}
func (Bulk) isReply()         {}
func (Array) isReply()        {}
func (ErrorReply) isReply()   {}
func (Map) isReply()          {}
func (Pairs) isReply()        {}
func (Set) isReply()          {}

// OK is the +OK reply.
const OK = SimpleString("OK")

// Null is the null bulk reply.
var Null = Bulk(nil)
