package script

import (
	"fmt"
	"strings"
	"testing"
)

// TestCMsgpack: cmsgpack's encodings, byte for byte as redis-server
// 7.0.15 gives them (the same script run on both, by hand), and its
// decoders' objects and offsets.
func TestCMsgpack(t *testing.T) {
	e := newEngine(t)
	m := newMem()
	hex := `local function hex(s) local h = "" for i = 1, #s do h = h .. string.format("%02x", string.byte(s, i)) end return h end `
	for _, c := range []struct{ expr, want string }{
		{"0.1", "cb3fb999999999999a"},
		{"-1099511627776", "d3ffffff0000000000"},
		{"1", "01"}, {"127", "7f"}, {"128", "cc80"}, {"256", "cd0100"}, {"65536", "ce00010000"},
		{"4294967296", "cf0000000100000000"}, {"-1", "ff"}, {"-32", "e0"}, {"-33", "d0df"},
		{"-129", "d1ff7f"}, {"-32769", "d2ffff7fff"}, {"2^31", "ce80000000"}, {"-2^31-1", "d3ffffffff7fffffff"},
		{"1.5", "ca3fc00000"}, {"1/0", "ca7f800000"}, {"2^53", "cf0020000000000000"},
		{"{1,2,3}", "93010203"}, {"{}", "90"}, {"{a=1}", "81a16101"}, {"{[1]=1,[3]=3}", "8201010303"},
		{`"abc", true, false`, "a3616263c3c2"},
		{`string.rep("x", 40)`, "d928" + strings.Repeat("78", 40)},
	} {
		got := eval(t, e, m, hex+"return hex(cmsgpack.pack("+c.expr+"))", "0")
		if fmt.Sprintf("%s", got) != c.want {
			t.Errorf("cmsgpack.pack(%s) = %v, want %s", c.expr, got, c.want)
		}
	}
	for _, c := range []struct{ body, want string }{
		{`local a, b, c = cmsgpack.unpack(cmsgpack.pack(1, "x", {5,6})) return tostring(a) .. b .. c[2]`, "1x6"},
		{`local off, o = cmsgpack.unpack_one(cmsgpack.pack(7, 8), 0) local off2, o2 = cmsgpack.unpack_one(cmsgpack.pack(7, 8), off) return off .. ":" .. o .. " " .. off2 .. ":" .. o2`, "1:7 -1:8"},
		{`return tostring(#{cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 0, 0)})`, "3"},
		{`local t = {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 2)} return #t .. ":" .. t[1] .. t[2] .. t[3]`, "3:212"},
		{`local u = cmsgpack.unpack(cmsgpack.pack({x={y={1,2}}, n=1.25})) return u.x.y[2] .. ":" .. u.n`, "2:1.25"},
		// Nesting stops at 16 tables: a cycle is cut there.
		{`local a = {y=5} a.x = a local r = cmsgpack.unpack(cmsgpack.pack(a)) return tostring(r.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.y) .. tostring(r.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x)`, "5nil"},
		{`local ok, err = pcall(cmsgpack.unpack, "\218\0\5ab") return tostring(ok) .. tostring(string.find(err, "Missing bytes in input.", 1, true) ~= nil)`, "falsetrue"},
		{`local ok, err = pcall(cmsgpack.unpack, "\199\1\1a") return tostring(string.find(err, "Bad data format in input.", 1, true) ~= nil)`, "true"},
	} {
		if got := eval(t, e, m, c.body, "0"); fmt.Sprintf("%s", got) != c.want {
			t.Errorf("%s = %v, want %s", c.body, got, c.want)
		}
	}
}
