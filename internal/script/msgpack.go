package script

import (
	"bytes"
	"errors"
	"math"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
	lua "github.com/yuin/gopher-lua"
)

// cmsgpack is Redis's lua-cmsgpack (pack, unpack, unpack_one,
// unpack_limit), its conversion rules on github.com/vmihailenco/msgpack's
// encoder and decoder (job queues' scripts, BullMQ's among them, unpack
// their options with it):
//   - a number that is an integer (it fits an int64 exactly) is the
//     smallest MessagePack integer that holds it; any other a float 32
//     when that loses nothing, else a float 64;
//   - a string is a str (fixstr, str8, str16, str32 by length);
//   - a table whose keys are exactly 1..n is an array (an empty table an
//     empty array), any other a map, in the table's iteration order
//     (gopher-lua's, not Lua 5.1's: a map's pairs may come in another
//     order than Redis's, the same pairs);
//   - tables nest at most msgpackMaxNesting deep: deeper ones (a cycle)
//     are nil;
//   - booleans and nil are themselves; anything else (a function,
//     userdata) is nil.
//
// unpack returns every object of a string; unpack_one(s, offset) and
// unpack_limit(s, limit, offset) return the offset of the next object
// (-1 when none is left) and up to limit objects from offset.
// MessagePack maps and arrays decode to tables, str and bin to strings,
// integers and floats to numbers, nil to nil; an ext type or a truncated
// string is an error.

// msgpackMaxNesting is lua-cmsgpack's LUACMSGPACK_MAX_NESTING.
const msgpackMaxNesting = 16

func newCMsgpack(L *lua.LState) *lua.LTable {
	t := L.NewTable()
	t.RawSetString("pack", L.NewFunction(msgpackPack))
	t.RawSetString("unpack", L.NewFunction(func(L *lua.LState) int {
		_, n := msgpackUnpack(L, L.CheckString(1), 0, -1)
		return n
	}))
	t.RawSetString("unpack_one", L.NewFunction(func(L *lua.LState) int {
		return msgpackUnpackFrom(L, 1, L.OptInt(2, 0))
	}))
	t.RawSetString("unpack_limit", L.NewFunction(func(L *lua.LState) int {
		return msgpackUnpackFrom(L, L.CheckInt(2), L.OptInt(3, 0))
	}))
	return t
}

func msgpackPack(L *lua.LState) int {
	n := L.GetTop()
	if n == 0 {
		L.ArgError(1, "MessagePack pack needs input.")
	}
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	for i := 1; i <= n; i++ {
		if err := msgpackEncode(enc, L.Get(i), 0); err != nil {
			L.RaiseError("cmsgpack: %s", err.Error())
		}
	}
	L.Push(lua.LString(buf.String()))
	return 1
}

func msgpackEncode(enc *msgpack.Encoder, v lua.LValue, depth int) error {
	switch v := v.(type) {
	case lua.LBool:
		return enc.EncodeBool(bool(v))
	case lua.LString:
		return enc.EncodeString(string(v))
	case lua.LNumber:
		f := float64(v)
		if !math.IsInf(f, 0) && !math.IsNaN(f) && f >= -(1<<63) && f < 1<<63 && float64(int64(f)) == f {
			return enc.EncodeInt(int64(f))
		}
		if float64(float32(f)) == f {
			return enc.EncodeFloat32(float32(f))
		}
		return enc.EncodeFloat64(f)
	case *lua.LTable:
		if depth >= msgpackMaxNesting {
			return enc.EncodeNil()
		}
		if n, ok := msgpackArrayLen(v); ok {
			if err := enc.EncodeArrayLen(n); err != nil {
				return err
			}
			for i := 1; i <= n; i++ {
				if err := msgpackEncode(enc, v.RawGetInt(i), depth+1); err != nil {
					return err
				}
			}
			return nil
		}
		var pairs []lua.LValue
		v.ForEach(func(k, val lua.LValue) { pairs = append(pairs, k, val) })
		if err := enc.EncodeMapLen(len(pairs) / 2); err != nil {
			return err
		}
		for _, p := range pairs {
			if err := msgpackEncode(enc, p, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return enc.EncodeNil() // nil, functions, userdata, threads
}

// msgpackArrayLen is lua-cmsgpack's table_is_an_array: every key a
// positive integer and as many keys as the largest.
func msgpackArrayLen(t *lua.LTable) (int, bool) {
	count, maxKey, ok := 0, 0, true
	t.ForEach(func(k, _ lua.LValue) {
		n, isNum := k.(lua.LNumber)
		if !isNum || float64(n) < 1 || float64(n) != math.Floor(float64(n)) || float64(n) > math.MaxInt32 {
			ok = false
			return
		}
		count++
		maxKey = max(maxKey, int(n))
	})
	return count, ok && count == maxKey
}

// msgpackUnpackFrom is unpack_one and unpack_limit: the offset of the
// next object (-1 when none is left), then up to limit objects from
// offset; with limit and offset both 0, every object and no offset, as
// lua-cmsgpack's mp_unpack_full.
func msgpackUnpackFrom(L *lua.LState, limit, offset int) int {
	s := L.CheckString(1)
	switch {
	case limit < 0 || offset < 0:
		L.RaiseError("Invalid request to unpack with offset of %d and limit of %d.", offset, limit)
	case offset > len(s):
		L.RaiseError("Start offset %d greater than input length %d.", offset, len(s))
	case limit == 0 && offset == 0:
		_, n := msgpackUnpack(L, s, 0, -1)
		return n
	}
	L.Push(lua.LNumber(0)) // the offset, set below
	at := L.GetTop()
	next, n := msgpackUnpack(L, s, offset, limit)
	if next == len(s) {
		next = -1
	}
	L.Replace(at, lua.LNumber(next))
	return n + 1
}

// msgpackUnpack pushes up to limit (-1: all) objects decoded from s at
// offset and returns the offset after them and how many it pushed.
func msgpackUnpack(L *lua.LState, s string, offset, limit int) (int, int) {
	r := bytes.NewReader([]byte(s[offset:]))
	dec := msgpack.NewDecoder(r)
	n := 0
	for r.Len() > 0 && (limit < 0 || n < limit) {
		v, err := msgpackDecode(L, dec, 0)
		if errors.Is(err, errMsgpackExt) {
			L.RaiseError("Bad data format in input.")
		}
		if err != nil {
			L.RaiseError("Missing bytes in input.")
		}
		L.Push(v)
		n++
	}
	return len(s) - r.Len(), n
}

var errMsgpackExt = errors.New("cmsgpack: ext types are not supported")

func msgpackDecode(L *lua.LState, dec *msgpack.Decoder, depth int) (lua.LValue, error) {
	c, err := dec.PeekCode()
	if err != nil {
		return nil, err
	}
	switch {
	case c == msgpcode.Nil:
		return lua.LNil, dec.DecodeNil()
	case c == msgpcode.False || c == msgpcode.True:
		b, err := dec.DecodeBool()
		return lua.LBool(b), err
	case c == msgpcode.Float || c == msgpcode.Double:
		f, err := dec.DecodeFloat64()
		return lua.LNumber(f), err
	case msgpcode.IsFixedNum(c) || c == msgpcode.Uint8 || c == msgpcode.Uint16 || c == msgpcode.Uint32 ||
		c == msgpcode.Int8 || c == msgpcode.Int16 || c == msgpcode.Int32 || c == msgpcode.Int64:
		i, err := dec.DecodeInt64()
		return lua.LNumber(i), err
	case c == msgpcode.Uint64:
		u, err := dec.DecodeUint64()
		return lua.LNumber(u), err
	case msgpcode.IsString(c) || msgpcode.IsBin(c):
		b, err := dec.DecodeBytes()
		return lua.LString(b), err
	case msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32:
		n, err := dec.DecodeArrayLen()
		if err != nil {
			return nil, err
		}
		t := L.CreateTable(max(n, 0), 0)
		for i := 1; i <= n; i++ {
			v, err := msgpackDecode(L, dec, depth+1)
			if err != nil {
				return nil, err
			}
			t.RawSetInt(i, v)
		}
		return t, nil
	case msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32:
		n, err := dec.DecodeMapLen()
		if err != nil {
			return nil, err
		}
		t := L.CreateTable(0, max(n, 0))
		for range n {
			k, err := msgpackDecode(L, dec, depth+1)
			if err != nil {
				return nil, err
			}
			v, err := msgpackDecode(L, dec, depth+1)
			if err != nil {
				return nil, err
			}
			if k != lua.LNil {
				t.RawSet(k, v)
			}
		}
		return t, nil
	}
	return nil, errMsgpackExt
}
