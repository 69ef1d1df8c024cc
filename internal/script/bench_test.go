package script

import (
	"strconv"
	"testing"

	"github.com/tandemdb/tandem/internal/commands"
)

// BenchmarkEval: EVAL of INCR + EXPIRE on one key, the engine's own cost
// (a pooled state, the cached chunk, two commands in a batch), no node.
func BenchmarkEval(b *testing.B) {
	e, m := New(Config{}), newMem()
	ctx := &commands.Ctx{NowMs: m.now, Scripts: e}
	spec, _ := commands.Lookup([]byte("eval"))
	body := []byte("redis.call('incr', KEYS[1]); return redis.call('expire', KEYS[1], 60)")
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		args := [][]byte{[]byte("eval"), body, []byte("1"), []byte("k" + strconv.Itoa(i%100))}
		res, err := spec.Exec(ctx, m, args)
		if err != nil || len(res.Ops) == 0 {
			b.Fatal(res, err)
		}
	}
}
