package script

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// cjsonError is a cjson failure, worded as lua-cjson words it (a Lua
// error text, capitalised).
type cjsonError string

func (e cjsonError) Error() string { return string(e) }

// cjsonConfig is lua-cjson's settings that Redis scripts use.
type cjsonConfig struct {
	encodeDepth, decodeDepth int
	invalidNumbers           bool
	null                     *lua.LUserData
}

// newCJSON is Redis's cjson (encode, decode, null and the settings
// encode_max_depth, decode_max_depth, encode_invalid_numbers,
// encode_keep_buffer) on encoding/json: a table whose keys are 1..n is
// an array, any other a JSON object (an empty table encodes as {}, as
// lua-cjson does); numbers print as lua-cjson's %.14g; JSON null decodes
// to cjson.null.
func newCJSON(L *lua.LState) *lua.LTable {
	cfg := &cjsonConfig{encodeDepth: 1000, decodeDepth: 1000, null: L.NewUserData()}
	t := L.NewTable()
	t.RawSetString("null", cfg.null)
	t.RawSetString("encode", L.NewFunction(func(L *lua.LState) int {
		var buf bytes.Buffer
		if err := cfg.encode(&buf, L.CheckAny(1), 1); err != nil {
			L.RaiseError("%s", err.Error())
		}
		L.Push(lua.LString(buf.String()))
		return 1
	}))
	t.RawSetString("decode", L.NewFunction(func(L *lua.LState) int {
		dec := json.NewDecoder(bytes.NewReader([]byte(L.CheckString(1))))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			L.RaiseError("Expected value but found invalid token at character 1")
		}
		out, err := cfg.fromJSON(L, v, 1)
		if err != nil {
			L.RaiseError("%s", err.Error())
		}
		L.Push(out)
		return 1
	}))
	setting := func(set func(L *lua.LState)) *lua.LFunction {
		return L.NewFunction(func(L *lua.LState) int {
			if L.GetTop() > 0 {
				set(L)
			}
			return 0
		})
	}
	t.RawSetString("encode_max_depth", setting(func(L *lua.LState) { cfg.encodeDepth = L.CheckInt(1) }))
	t.RawSetString("decode_max_depth", setting(func(L *lua.LState) { cfg.decodeDepth = L.CheckInt(1) }))
	t.RawSetString("encode_invalid_numbers", setting(func(L *lua.LState) { cfg.invalidNumbers = L.ToBool(1) }))
	t.RawSetString("encode_keep_buffer", setting(func(*lua.LState) {}))
	return t
}

func (cfg *cjsonConfig) encode(buf *bytes.Buffer, v lua.LValue, depth int) error {
	switch v := v.(type) {
	case lua.LString:
		b, _ := json.Marshal(string(v))
		buf.Write(b)
	case lua.LNumber:
		f := float64(v)
		if math.IsInf(f, 0) || math.IsNaN(f) {
			if !cfg.invalidNumbers {
				return cjsonError("Cannot serialise number: must not be NaN or Inf")
			}
			buf.WriteString(strings.ToLower(strconv.FormatFloat(f, 'g', -1, 64)))
			return nil
		}
		buf.WriteString(strconv.FormatFloat(f, 'g', 14, 64))
	case lua.LBool:
		buf.WriteString(strconv.FormatBool(bool(v)))
	case *lua.LNilType:
		buf.WriteString("null")
	case *lua.LUserData:
		if v != cfg.null {
			return cjsonError("Cannot serialise userdata: type not supported")
		}
		buf.WriteString("null")
	case *lua.LTable:
		// Depth counts tables, as lua-cjson's does.
		if depth > cfg.encodeDepth {
			return cjsonError(fmt.Sprintf("Cannot serialise, excessive nesting (%d)", depth))
		}
		n := v.MaxN()
		count := 0
		v.ForEach(func(lua.LValue, lua.LValue) { count++ })
		if n > 0 && n == count {
			buf.WriteByte('[')
			for i := 1; i <= n; i++ {
				if i > 1 {
					buf.WriteByte(',')
				}
				if err := cfg.encode(buf, v.RawGetInt(i), depth+1); err != nil {
					return err
				}
			}
			buf.WriteByte(']')
			return nil
		}
		type kv struct {
			k string
			v lua.LValue
		}
		var kvs []kv
		var bad error
		v.ForEach(func(k, val lua.LValue) {
			switch k := k.(type) {
			case lua.LString:
				kvs = append(kvs, kv{string(k), val})
			case lua.LNumber:
				kvs = append(kvs, kv{strconv.FormatFloat(float64(k), 'g', 14, 64), val})
			default:
				bad = cjsonError(fmt.Sprintf("Cannot serialise %s: table key must be a number or string", k.Type()))
			}
		})
		if bad != nil {
			return bad
		}
		sort.Slice(kvs, func(i, j int) bool { return kvs[i].k < kvs[j].k })
		buf.WriteByte('{')
		for i, e := range kvs {
			if i > 0 {
				buf.WriteByte(',')
			}
			b, _ := json.Marshal(e.k)
			buf.Write(b)
			buf.WriteByte(':')
			if err := cfg.encode(buf, e.v, depth+1); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	default:
		return cjsonError(fmt.Sprintf("Cannot serialise %s: type not supported", v.Type()))
	}
	return nil
}

func (cfg *cjsonConfig) fromJSON(L *lua.LState, v any, depth int) (lua.LValue, error) {
	switch v := v.(type) {
	case nil:
		return cfg.null, nil
	case bool:
		return lua.LBool(v), nil
	case json.Number:
		f, _ := strconv.ParseFloat(string(v), 64)
		return lua.LNumber(f), nil
	case string:
		return lua.LString(v), nil
	}
	if depth > cfg.decodeDepth {
		return nil, cjsonError(fmt.Sprintf("Found too many nested data structures (%d)", depth))
	}
	switch v := v.(type) {
	case []any:
		t := L.CreateTable(len(v), 0)
		for i, e := range v {
			lv, err := cfg.fromJSON(L, e, depth+1)
			if err != nil {
				return nil, err
			}
			t.RawSetInt(i+1, lv)
		}
		return t, nil
	case map[string]any:
		t := L.CreateTable(0, len(v))
		for k, e := range v {
			lv, err := cfg.fromJSON(L, e, depth+1)
			if err != nil {
				return nil, err
			}
			t.RawSetString(k, lv)
		}
		return t, nil
	}
	return lua.LNil, nil
}

// newBit is LuaBitOp (Redis's bit library): 32-bit operations on
// numbers, results as signed 32-bit integers.
func newBit(L *lua.LState) *lua.LTable {
	t := L.NewTable()
	fold := func(op func(a, b int32) int32) lua.LGFunction {
		return func(L *lua.LState) int {
			acc := tobit(L.CheckNumber(1))
			for i := 2; i <= L.GetTop(); i++ {
				acc = op(acc, tobit(L.CheckNumber(i)))
			}
			L.Push(lua.LNumber(acc))
			return 1
		}
	}
	shift := func(op func(a int32, n uint) int32) lua.LGFunction {
		return func(L *lua.LState) int {
			L.Push(lua.LNumber(op(tobit(L.CheckNumber(1)), uint(tobit(L.CheckNumber(2))&31))))
			return 1
		}
	}
	fns := map[string]lua.LGFunction{
		"tobit":   func(L *lua.LState) int { L.Push(lua.LNumber(tobit(L.CheckNumber(1)))); return 1 },
		"bnot":    func(L *lua.LState) int { L.Push(lua.LNumber(^tobit(L.CheckNumber(1)))); return 1 },
		"band":    fold(func(a, b int32) int32 { return a & b }),
		"bor":     fold(func(a, b int32) int32 { return a | b }),
		"bxor":    fold(func(a, b int32) int32 { return a ^ b }),
		"lshift":  shift(func(a int32, n uint) int32 { return int32(uint32(a) << n) }),
		"rshift":  shift(func(a int32, n uint) int32 { return int32(uint32(a) >> n) }),
		"arshift": shift(func(a int32, n uint) int32 { return a >> n }),
		"rol": shift(func(a int32, n uint) int32 {
			return int32(uint32(a)<<n | uint32(a)>>((32-n)&31))
		}),
		"ror": shift(func(a int32, n uint) int32 {
			return int32(uint32(a)>>n | uint32(a)<<((32-n)&31))
		}),
		"bswap": func(L *lua.LState) int {
			x := uint32(tobit(L.CheckNumber(1)))
			L.Push(lua.LNumber(int32(x>>24 | x>>8&0xff00 | x<<8&0xff0000 | x<<24)))
			return 1
		},
		"tohex": func(L *lua.LState) int {
			x := tobit(L.CheckNumber(1))
			n := int32(8)
			if L.GetTop() >= 2 {
				n = tobit(L.CheckNumber(2))
			}
			digits := "0123456789abcdef"
			if n < 0 {
				n, digits = -n, "0123456789ABCDEF"
			}
			if n > 8 {
				n = 8
			}
			buf := make([]byte, n)
			u := uint32(x)
			for i := int(n) - 1; i >= 0; i-- {
				buf[i] = digits[u&15]
				u >>= 4
			}
			L.Push(lua.LString(buf))
			return 1
		},
	}
	for name, fn := range fns {
		t.RawSetString(name, L.NewFunction(fn))
	}
	return t
}

// tobit is LuaBitOp's normalisation: the number rounded to an integer,
// taken modulo 2^32, as a signed 32-bit integer.
func tobit(n lua.LNumber) int32 {
	f := math.RoundToEven(float64(n))
	f = math.Mod(f, 1<<32)
	return int32(uint32(int64(f)))
}
