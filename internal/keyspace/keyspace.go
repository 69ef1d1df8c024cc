// Package keyspace declares the keyspace as a command reads it: a live
// Value and the View that yields values. It sits below both the commands
// package (which reads through a View) and storage (which implements one),
// so that storage need not import commands. commands.Value and
// commands.View are aliases of these types.
package keyspace

// Value is a live string value and its absolute expiry.
type Value struct {
	Data       []byte
	ExpireAtMs int64 // absolute Unix milliseconds; 0 means no expiry
}

// View is the keyspace a command reads. Implementations hide expired keys:
// Get never returns a key whose ExpireAtMs is at or before the reading
// command's clock (commands.Ctx.NowMs).
type View interface {
	// Get returns the live value of key. Replies and operations may keep
	// the returned Data after the command returns, so an implementation
	// must never modify it afterwards (return a copy or immutable bytes).
	Get(key []byte) (Value, bool, error)
	// Scan calls fn for live keys >= start in ascending order until fn
	// returns false. The key slice is valid only during the call; commands
	// copy the keys they keep.
	Scan(start []byte, fn func(key []byte, v Value) bool) error
}
