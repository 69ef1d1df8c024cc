package resp

import (
	"strconv"

	"github.com/tidwall/redcon"

	"github.com/tandemdb/tandem/internal/commands"
)

// writeReply encodes r for a RESP2 client, or a RESP3 one when proto3:
// RESP3 gets '_' for the null bulk and the null array, and '%' maps;
// RESP2 gets "$-1", "*-1" and maps flattened into arrays of pairs.
func writeReply(w redcon.Conn, r commands.Reply, proto3 bool) {
	switch r := r.(type) {
	case commands.Bulk:
		if r == nil {
			writeNull(w, proto3, false)
			return
		}
		w.WriteBulk(r)
	case commands.SimpleString:
		w.WriteString(string(r))
	case commands.Int:
		w.WriteInt64(int64(r))
	case commands.Array:
		if r == nil {
			writeNull(w, proto3, true)
			return
		}
		w.WriteArray(len(r))
		for _, e := range r {
			writeReply(w, e, proto3)
		}
	case commands.Bulks:
		w.WriteArray(len(r))
		for _, b := range r {
			w.WriteBulk(b)
		}
	case commands.BulkPair:
		w.WriteArray(2)
		w.WriteBulk(r[0])
		w.WriteBulk(r[1])
	case commands.Double:
		writeDouble(w, float64(r), proto3)
	case commands.ScorePair:
		w.WriteArray(2)
		w.WriteBulk(r.Member)
		writeDouble(w, r.Score, proto3)
	case commands.ErrorReply:
		w.WriteError(string(r))
	case commands.Map:
		if proto3 {
			w.WriteRaw(strconv.AppendInt([]byte{'%'}, int64(len(r)/2), 10))
			w.WriteRaw(crlf)
		} else {
			w.WriteArray(len(r))
		}
		for _, e := range r {
			writeReply(w, e, proto3)
		}
	case commands.Set:
		if proto3 {
			w.WriteRaw(strconv.AppendInt([]byte{'~'}, int64(len(r)), 10))
			w.WriteRaw(crlf)
		} else {
			w.WriteArray(len(r))
		}
		for _, e := range r {
			writeReply(w, e, proto3)
		}
	case commands.Pairs:
		// RESP3: an array of [a, b] pairs; RESP2: flat.
		if proto3 {
			w.WriteArray(len(r) / 2)
		} else {
			w.WriteArray(len(r))
		}
		for i, e := range r {
			if proto3 && i%2 == 0 {
				w.WriteArray(2)
			}
			writeReply(w, e, proto3)
		}
	case nil:
		writeNull(w, proto3, false)
	default:
		// Reply is a closed set; a new type must be added here.
		panic("resp: unknown reply type")
	}
}

var (
	crlf       = []byte("\r\n")
	null3      = []byte("_\r\n")
	nullArray2 = []byte("*-1\r\n")
)

// writeDouble writes a score: a double in RESP3, a bulk string in RESP2.
func writeDouble(w redcon.Conn, d float64, proto3 bool) {
	if proto3 {
		w.WriteRaw(append(append([]byte{','}, commands.FormatDouble(d)...), crlf...))
	} else {
		w.WriteBulk(commands.FormatDouble(d))
	}
}

func writeNull(w redcon.Conn, proto3, array bool) {
	switch {
	case proto3:
		w.WriteRaw(null3)
	case array:
		w.WriteRaw(nullArray2)
	default:
		w.WriteNull()
	}
}
