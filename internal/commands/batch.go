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
// replaced collection before such a write. Only a collection this batch
// created can be named again (an older one's version is below the
// entry's LSN), so only a write over a key the batch made a collection
// of reads the old value; any other is left to the sweeper, as a single
// command's is, and a batch of SETs reads nothing.
//
// A Batch is not copied once used: created may point into it.
type Batch struct {
	v       View
	layer   *keyspace.Layer
	ops     []logrec.Op
	applied int // ops[:applied] are in layer
	pub     []Message
	// created holds the keys of the collections the batch created (a
	// metadata op at the view's NewVersion): the ops' own key bytes, up
	// to createdInline of them, looked for in order (a map and a string
	// per key were three allocations of a push that serves a blocked
	// pop), then createdMap, which holds them all.
	created    [][]byte
	createdArr [createdInline][]byte // created's first storage
	createdMap map[string]struct{}
	views      []batchView // what View handed out
}

// batchView is one view of the batch (View): a reader of its rows as of
// some ops. View hands out a pointer to it, so a command's view costs no
// allocation of its own (the Reader boxed in an interface would).
type batchView struct {
	rows batchRows
	r    keyspace.Reader // r.R is &rows
}

// NewBatch starts a batch on v.
func NewBatch(v View) *Batch { return &Batch{v: v} }

// Init starts b, a Batch held inside something of the caller's (a
// script's run), as a new batch on v: no allocation of its own.
func (b *Batch) Init(v View) { *b = Batch{v: v} }

// View is the batch's view: v with the writes of the commands run so far.
//
// The writes reach the batch's layer only when the view is first read: a
// pipeline of SETs, which read nothing, never builds their rows a third
// time (the leader's overlay and storage build them too). A view sees
// the ops run before it was made, whenever it is read, not those added
// after (Run reads a command's view once the command's own ops are
// added).
func (b *Batch) View() View {
	if len(b.ops) == 0 {
		return b.v
	}
	// The views come from a slice the batch grows, not one allocation
	// per view (a pipeline makes one per command); an element is never
	// written again, so a view made before the slice grew stays true
	// (and a copy's reader still reads the rows it was made with, the
	// same values).
	b.views = append(b.views, batchView{rows: batchRows{b: b, upTo: len(b.ops)}})
	bv := &b.views[len(b.views)-1]
	bv.r = keyspace.Reader{R: &bv.rows, NowMs: b.v.Now(), LSN: b.v.NewVersion()}
	return &bv.r
}

// Reserve makes room for the views of n more commands (a transaction's,
// a pipeline's) and for ops more ops (one per write command: a SET's, an
// INCR's), so that View and the ops do not grow their slices command by
// command (a MULTI of 5 SETs grew its ops 1, 2, 4, 8).
func (b *Batch) Reserve(n, ops int) {
	if cap(b.views)-len(b.views) < n {
		b.views = append(make([]batchView, 0, len(b.views)+n), b.views...)
	}
	if cap(b.ops)-len(b.ops) < ops {
		b.ops = append(make([]logrec.Op, 0, len(b.ops)+ops), b.ops...)
	}
}

// sync brings the batch's layer up to ops[:upTo].
func (b *Batch) sync(upTo int) *keyspace.Layer {
	if b.layer == nil {
		b.layer = keyspace.NewLayer(b.v.Rows())
	}
	for ; b.applied < upTo; b.applied++ {
		// The ops are this package's own: they apply (a failure would be
		// a bug here, and storage's Apply of the entry would report it).
		_ = keyspace.Apply(b.layer, &b.ops[b.applied])
	}
	return b.layer
}

// batchRows are the batch's rows as of its first upTo ops: the layer,
// brought up to them when read. Views are read in the order they were
// made (each command's before the next command's is), so the layer is
// never past upTo when one is read.
type batchRows struct {
	b    *Batch
	upTo int
}

func (r *batchRows) Get(k []byte) ([]byte, bool, error) { return r.b.sync(r.upTo).Get(k) }

func (r *batchRows) Iter(lo, hi []byte, fn func(k, v []byte) bool) error {
	return r.b.sync(r.upTo).Iter(lo, hi, fn)
}

func (r *batchRows) IterReverse(lo, hi []byte, fn func(k, v []byte) bool) error {
	return r.b.sync(r.upTo).IterReverse(lo, hi, fn)
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
	// The first command to write, in a batch with no room reserved (a
	// script's), hands the batch its own ops slice rather than a copy: a
	// command's ops are its caller's (the leader rewrites a single
	// command's in place when it encodes them), and capped at their
	// length, so that the batch's next append copies them rather than
	// write past them. It is copied after all if a drop must go before
	// one of them.
	adopt := b.ops == nil
	for i := range res.Ops {
		op := &res.Ops[i]
		if op.Kind == logrec.OpPut && b.made(op.Key) {
			old, ok, err := v.Get(op.Key)
			if err != nil {
				return nil, err
			}
			if ok && !old.IsString() {
				if adopt {
					b.ops, adopt = append(b.ops, res.Ops[:i]...), false
				}
				b.add(keyspace.DeleteOp(op.Key, old))
			}
		}
		if adopt {
			b.noteCreated(op)
		} else {
			b.add(*op)
		}
	}
	if adopt && len(res.Ops) > 0 {
		b.ops = res.Ops[:len(res.Ops):len(res.Ops)]
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

// add appends op to the batch's ops, noting a collection it creates (a
// metadata op at the view's NewVersion).
func (b *Batch) add(op logrec.Op) {
	b.noteCreated(&op)
	b.ops = append(b.ops, op)
}

// noteCreated notes the collection op creates, if it is a metadata op at
// the view's NewVersion.
func (b *Batch) noteCreated(op *logrec.Op) {
	if op.Kind != logrec.OpMeta || op.Version != b.v.NewVersion() || b.made(op.Key) {
		return
	}
	switch {
	case b.createdMap != nil:
		b.createdMap[string(op.Key)] = struct{}{}
	case len(b.created) < createdInline:
		if b.created == nil {
			b.created = b.createdArr[:0]
		}
		b.created = append(b.created, op.Key)
	default:
		b.createdMap = make(map[string]struct{}, 2*createdInline)
		for _, k := range b.created {
			b.createdMap[string(k)] = struct{}{}
		}
		b.createdMap[string(op.Key)] = struct{}{}
		b.created = nil
	}
}

// createdInline is how many created keys a Batch keeps in created before
// it keeps them in createdMap.
const createdInline = 4

// made reports whether the batch created a collection at key.
func (b *Batch) made(key []byte) bool {
	if b.createdMap != nil {
		_, ok := b.createdMap[string(key)]
		return ok
	}
	for _, k := range b.created {
		if string(k) == string(key) {
			return true
		}
	}
	return false
}

// Ops are the operations of every command run so far, in order.
func (b *Batch) Ops() []logrec.Op { return b.ops }

// Publish are the messages of every command run so far, in order: their
// keyspace notifications (Result.Publish).
func (b *Batch) Publish() []Message { return b.pub }
