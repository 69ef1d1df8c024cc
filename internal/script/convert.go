package script

import (
	"strings"

	lua "github.com/yuin/gopher-lua"

	"github.com/tandemdb/tandem/internal/commands"
)

// luaOK is the string OK as a Lua value, boxed once: the status of most
// writes a script makes.
var luaOK lua.LValue = lua.LString("OK")

// toLua converts a command's reply for the script, by Redis's rules
// (RESP2, the default): integer → number, bulk → string, nil bulk or nil
// array → false, array → table, status → {ok=...}, error → {err=...};
// a map (a RESP3 reply) is a flat array as RESP2 writes it, a score
// (Double: ZSCORE, ZINCRBY, ZPOPMIN's) the string RESP2 writes. Under
// redis.setresp(3) a map is {map={k=v}}, a score {double=n} and a null
// is nil.
func toLua(L *lua.LState, r commands.Reply, resp int) lua.LValue {
	switch r := r.(type) {
	case commands.Int:
		return lua.LNumber(r)
	case commands.Bulk:
		if r == nil {
			if resp == 3 {
				return lua.LNil
			}
			return lua.LFalse
		}
		return lua.LString(r)
	case commands.SimpleString:
		t := L.CreateTable(0, 1) // not NewTable's 32-slot map: every SET's reply
		var v lua.LValue = luaOK
		if r != "OK" {
			v = lua.LString(r)
		}
		t.RawSetString("ok", v)
		return t
	case commands.ErrorReply:
		return errTable(L, string(r))
	case commands.Double:
		if resp == 3 {
			t := L.CreateTable(0, 1)
			t.RawSetString("double", lua.LNumber(float64(r)))
			return t
		}
		return lua.LString(commands.FormatDouble(float64(r)))
	case commands.Array:
		if r == nil {
			if resp == 3 {
				return lua.LNil
			}
			return lua.LFalse
		}
		return luaArray(L, r, resp)
	case commands.Bulks:
		t := L.CreateTable(len(r), 0)
		for _, b := range r {
			t.Append(lua.LString(b))
		}
		return t
	case commands.BulkPair:
		// Only blocking pops answer one, which scripts may not call;
		// converted as the Bulks it stands for all the same.
		t := L.CreateTable(2, 0)
		t.Append(lua.LString(r[0]))
		t.Append(lua.LString(r[1]))
		return t
	case commands.ScorePair:
		// As the Array{Bulk, Double} it stands for.
		return luaArray(L, []commands.Reply{commands.Bulk(r.Member), commands.Double(r.Score)}, resp)
	case commands.Pairs:
		if resp == 3 {
			t := L.CreateTable(len(r)/2, 0)
			for i := 0; i+1 < len(r); i += 2 {
				t.Append(luaArray(L, r[i:i+2], resp))
			}
			return t
		}
		return luaArray(L, r, resp)
	case commands.Map:
		if resp == 3 {
			inner := L.NewTable()
			for i := 0; i+1 < len(r); i += 2 {
				inner.RawSet(toLua(L, r[i], resp), toLua(L, r[i+1], resp))
			}
			t := L.NewTable()
			t.RawSetString("map", inner)
			return t
		}
		return luaArray(L, r, resp)
	}
	return lua.LFalse
}

func luaArray(L *lua.LState, a []commands.Reply, resp int) *lua.LTable {
	t := L.CreateTable(len(a), 0)
	for i, e := range a {
		// RawSetInt, not Append: a nil element (RESP3) leaves a hole, as
		// in Redis, and must not shift the ones after it.
		t.RawSetInt(i+1, toLua(L, e, resp))
	}
	return t
}

// maxDepth bounds the nesting of a script's reply (Redis: "reached lua
// stack limit"), so a table that contains itself ends.
const maxDepth = 1000

// toReply converts a script's return value by Redis's rules: string →
// bulk, number → integer (truncated toward zero), true → 1, false → nil
// (under RESP2), a table with an err string → error, with an ok string →
// status, with a double number → a score (Double), with a map table →
// map, else an array of its elements 1, 2, …
// up to the first nil; anything else → nil.
func toReply(L *lua.LState, v lua.LValue, resp, depth int) commands.Reply {
	if depth > maxDepth {
		return commands.ErrorReply("ERR reached lua stack limit")
	}
	switch v := v.(type) {
	case lua.LString:
		return commands.Bulk(v)
	case lua.LNumber:
		return commands.Int(int64(float64(v)))
	case lua.LBool:
		if v {
			return commands.Int(1)
		}
		return commands.Null
	case *lua.LTable:
		if e, ok := v.RawGetString("err").(lua.LString); ok {
			msg := oneLine(string(e))
			if msg == "" {
				msg = "ERR"
			}
			return commands.ErrorReply(strings.TrimPrefix(msg, "-"))
		}
		if s, ok := v.RawGetString("ok").(lua.LString); ok {
			return commands.SimpleString(oneLine(string(s)))
		}
		if d, ok := v.RawGetString("double").(lua.LNumber); ok {
			return commands.Double(float64(d))
		}
		if mp, ok := v.RawGetString("map").(*lua.LTable); ok {
			out := commands.Map{}
			mp.ForEach(func(k, val lua.LValue) {
				out = append(out, toReply(L, k, resp, depth+1), toReply(L, val, resp, depth+1))
			})
			return out
		}
		out := commands.Array{}
		for i := 1; ; i++ {
			e := v.RawGetInt(i)
			if e == lua.LNil {
				break
			}
			out = append(out, toReply(L, e, resp, depth+1))
		}
		return out
	}
	return commands.Null
}
