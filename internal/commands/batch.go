package commands

import (
	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

// Batch runs commands one after another as one unit — a transaction's
// EXEC, a script's calls — and gathers their operations into one list,
// the body of one log entry: a follower applies all of it or none, and no
// reader on any node sees part of it.
//
// Each command reads the batch's view: the view it was made on with the
// writes of the commands before it over it (a keyspace.Layer, read through
// a keyspace.Reader, the same lookup and expiry rule as stored data).
//
// Versions. Every collection a command of the batch creates gets the
// view's one NewVersion (the entry's LSN), so one key may be created at
// the same version twice in a batch ("HSET h a 1", "DEL h", "HSET h b 2").
// That is safe when the first version's rows are gone before the second
// creation, in the order Apply applies the ops: a DEL or an expiry drops
// them (OpDrop), but a whole-value write over a collection (SET over a
// hash) does not drop what it replaces — a single command leaves those
// rows to the sweeper, since no metadata row names them. In a batch the
// next creation would name them again, so Batch logs a drop of the
// replaced collection before such a write. Only a collection the batch
// itself wrote can be at the batch's version: one that was there before
// it has an older version, which a later creation does not name, so, as
// after a single command, the sweeper takes its rows. Batch reads the
// key before a whole-value write only when an earlier op of the batch
// touched it (most transactions' SETs read nothing).
type Batch struct {
	v       View
	layer   *keyspace.Layer
	ops     []logrec.Op
	applied int // ops[:applied] are in layer
	pub     []Message
	// keys holds the key of every op in ops once there are more than
	// scanOps of them (touched scans ops below that).
	keys map[string]struct{}
}

// scanOps is how many ops touched scans before it keeps a set of keys.
const scanOps = 32

// NewBatch starts a batch on v.
func NewBatch(v View) *Batch { return &Batch{v: v} }

// View is the batch's view: v with the writes of the commands run so far.
func (b *Batch) View() View {
	if len(b.ops) == 0 {
		return b.v
	}
	if b.layer == nil {
		b.layer = keyspace.NewLayer(b.v.Rows())
	}
	for ; b.applied < len(b.ops); b.applied++ {
		// The ops are this package's own: they apply (a failure would be
		// a bug here, and storage's Apply of the entry would report it).
		_ = keyspace.Apply(b.layer, &b.ops[b.applied])
	}
	return keyspace.Reader{R: b.layer, NowMs: b.v.Now(), LSN: b.v.NewVersion()}
}

// Run runs one command of the batch (its arity already checked) and
// returns its reply. An error is an internal one from the view, or an
// input error (IsInputError) that the caller turns into the command's
// reply; a command that fails changes nothing.
func (b *Batch) Run(ctx *Ctx, spec *Spec, args [][]byte) (Reply, error) {
	v := b.View()
	res, err := spec.Exec(ctx, v, args)
	if err != nil {
		return nil, err
	}
	for i := range res.Ops {
		op := &res.Ops[i]
		if op.Kind == logrec.OpPut && b.touched(op.Key) {
			old, ok, err := v.Get(op.Key)
			if err != nil {
				return nil, err
			}
			if ok && !old.IsString() {
				b.add(keyspace.DeleteOp(op.Key, old))
			}
		}
		b.add(*op)
	}
	msgs, err := Notifications(spec, args, v, res.Ops)
	if err != nil {
		return nil, err
	}
	b.pub = append(b.pub, msgs...)
	b.pub = append(b.pub, res.Publish...)
	return res.Reply, nil
}

// Append adds the ops of a command run outside the batch, on the view the
// batch was made on, as its first command: the commands run after it see
// its writes. (The node serves blocked pops in the entry of the push that
// feeds them this way.) Its messages are the caller's to publish first.
func (b *Batch) Append(ops []logrec.Op) {
	for i := range ops {
		b.add(ops[i])
	}
}

// touched reports whether an op of the batch so far is on key.
func (b *Batch) touched(key []byte) bool {
	if b.keys != nil {
		_, ok := b.keys[string(key)]
		return ok
	}
	for i := range b.ops {
		if string(b.ops[i].Key) == string(key) {
			return true
		}
	}
	return false
}

// add appends op to the batch's ops.
func (b *Batch) add(op logrec.Op) {
	b.ops = append(b.ops, op)
	switch {
	case b.keys != nil:
		b.keys[string(op.Key)] = struct{}{}
	case len(b.ops) > scanOps:
		b.keys = make(map[string]struct{}, 2*len(b.ops))
		for i := range b.ops {
			b.keys[string(b.ops[i].Key)] = struct{}{}
		}
	}
}

// Ops are the operations of every command run so far, in order.
func (b *Batch) Ops() []logrec.Op { return b.ops }

// Publish are the messages of every command run so far, in order: their
// keyspace notifications (Result.Publish).
func (b *Batch) Publish() []Message { return b.pub }
