package script

import "sync"

// lrand48 is Redis's redisLrand48 (rand.c): a 48-bit linear congruential
// generator, the same sequence on every platform, shared by every script
// of the engine (Redis 7 no longer reseeds it per script).
type lrand48 struct {
	mu sync.Mutex
	x  uint64
}

const (
	lrand48A   = 0x5DEECE66D
	lrand48C   = 0xB
	lrand48Max = 1<<31 - 1 // REDIS_LRAND48_MAX (INT32_MAX)
)

func (r *lrand48) seed(s int32) {
	r.mu.Lock()
	r.x = (uint64(uint32(s))<<16 | 0x330E) & (1<<48 - 1)
	r.mu.Unlock()
}

func (r *lrand48) next() uint64 {
	r.mu.Lock()
	r.x = (lrand48A*r.x + lrand48C) & (1<<48 - 1)
	v := r.x >> 17
	r.mu.Unlock()
	return v
}
