package replication

import (
	"bytes"
	"unsafe"

	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/storage"
)

// overlay holds the rows written by sequenced, not yet applied entries, so
// that the next write command sees the writes ordered before them. It is a
// keyspace.Layer: the rows are package keyspace's, written by its Apply and
// read by its Reader, the same as the stored data. The Leader's seqMu
// guards it. The zero value is an empty overlay.
//
// It also keeps the hints of where collections' live rows start and end
// (keyspace.Hints), which every write the leader sequences passes
// through here, so that pops do not step over the rows earlier pops
// deleted.
type overlay struct {
	l *keyspace.Layer
	h *keyspace.Hints
	k *keyLSNs
}

// keyLSNs is, for each user key that a sequenced entry still in the
// overlay touched (any op naming it), the LSN of the last such entry, and
// the LSN of the last FLUSHALL sequenced (it touches every key). Every
// row of a key, its metadata row and its sub-key rows alike, and every
// hint about them, changes only by ops that name the key, and the
// committed data only by the entries that pass here; so a command that
// read only keys absent from keys (and no FLUSHALL is pending) read only
// committed rows, and one that read key k read nothing written after
// entry keys[k]. A write that logs nothing is answered on that (Start,
// overlayView.note): it waits for the entries it read, not for every
// entry before it.
//
// Beside it, each key's shape LSN: the last entry in the overlay that may
// have changed the key's type, version or expiry (whether it is there,
// and which collection it is), any op but a sub-key row's and a
// collection's metadata row that keeps all three of the row the overlay
// held for it (so it changed only the size). A command whose reply
// depends only on that (commands.Result.ShapeOnly) waits for the shape
// LSN of the keys it read and the entries that wrote the sub-key rows it
// read one by one (keyspace.Layer.WrittenAt), not for the writes that
// only grew or shrank the collection beside it: an SADD of a member
// already there, while other SADDs to the set are in flight.
type keyLSNs struct {
	keys  map[string]keyLSN
	flush uint64
	meta  []byte // a metadata row key, reused
}

// keyLSN is a key's last LSN and shape LSN (keyLSNs).
type keyLSN struct{ last, shape uint64 }

// add records e's operations as the latest uncommitted rows. The entry was
// built by this leader or read from its verified log, so its ops apply; one
// that did not would fail the storage's Apply of the same entry loudly.
func (o *overlay) add(e *logrec.Entry, db *storage.DB) {
	if o.l == nil {
		o.l = keyspace.NewLayer(nil)
		o.h = keyspace.NewHints(nil)
		o.k = &keyLSNs{keys: make(map[string]keyLSN)}
	}
	// One arena for the layer's rows and the hints' row keys: a list
	// push or pop made two (each holds what it builds; the arena lives
	// while either does, and its first buffer is at most 64 KiB either
	// way).
	a := keyspace.NewArena(keyspace.OpsBytes(e.Ops) + keyspace.HintBytes(e.Ops))
	o.k.add(e, o.l, db) // before the layer holds e's rows: it compares with the rows before
	_ = o.l.ApplyOpsIn(e.LSN, e.Ops, a)
	_ = o.h.ApplyOpsIn(e.Ops, a)
}

// add records e's keys. l is the overlay's layer before e's rows, db the
// committed data under it.
func (k *keyLSNs) add(e *logrec.Entry, l *keyspace.Layer, db *storage.DB) {
	for i := range e.Ops {
		op := &e.Ops[i]
		if op.Kind == logrec.OpFlushAll {
			k.flush = e.LSN
			continue
		}
		if op.Kind == logrec.OpFunctions {
			continue // no key: the libraries' row (keyspace.FunctionsKey)
		}
		// The map keys on the op's key bytes without a copy: they are
		// the entry's own encoding (EncodeOwned, or a decoded log
		// record), which nothing writes again and which the entry keeps
		// for as long as it is in flight; a key is deleted (drop) or
		// rekeyed by a later entry's (Go updates a string key on
		// assignment) before the overlay forgets that entry.
		name := unsafe.String(unsafe.SliceData(op.Key), len(op.Key))
		kl := k.keys[name]
		kl.last = e.LSN
		if kl.shape != e.LSN && !k.keepsShape(e.LSN, op, l, db) {
			kl.shape = e.LSN
		}
		k.keys[name] = kl
	}
}

// keepsShape reports whether op, of entry lsn, leaves its key's type,
// version and expiry as they were: a sub-key row's op, or a metadata row
// of a collection made before lsn equal in all three to the one the
// layer holds, or when it holds none, to the committed row in the row
// cache (its size may differ). Without a row in memory to compare with,
// it may not: the store is not read here. (The committed row may
// already be lsn's own, if its group was applied before it got here:
// then lsn is committed, and no one need wait for it.)
func (k *keyLSNs) keepsShape(lsn uint64, op *logrec.Op, l *keyspace.Layer, db *storage.DB) bool {
	switch op.Kind {
	case logrec.OpSubPut, logrec.OpSubDel:
		return true
	case logrec.OpMeta:
	default:
		return false
	}
	if op.Version >= lsn {
		return false // made by this entry
	}
	k.meta = keyspace.AppendMetaKey(k.meta[:0], op.Key)
	row, long, held := l.Own(k.meta)
	if !held && db != nil {
		if c, ok := (storage.View{DB: db}).Rows().(keyspace.CachedRows); ok {
			row, held = c.Cached(k.meta)
		}
	}
	if !held || long || row == nil {
		return false
	}
	v, err := keyspace.DecodeMetaRow(row)
	return err == nil && uint8(v.Type) == op.Type && v.Version == op.Version && v.ExpireAtMs == op.ExpireAtMs
}

// drop forgets the keys whose last entry is applied (through last).
func (k *keyLSNs) drop(ops []logrec.Op, last uint64) {
	for i := range ops {
		op := &ops[i]
		if op.Kind == logrec.OpFlushAll || op.Kind == logrec.OpFunctions {
			continue
		}
		if kl, ok := k.keys[string(op.Key)]; ok && kl.last <= last {
			delete(k.keys, string(op.Key))
		}
	}
}

// of is the LSN of the last entry in the overlay that touched key, and
// its shape LSN (a FLUSHALL touches every key and changes its shape), 0
// if none.
func (k *keyLSNs) of(key []byte) (last, shape uint64) {
	kl := k.keys[string(key)]
	return max(kl.last, k.flush), max(kl.shape, k.flush)
}

// drop forgets the rows of applied entries through last, unless a later
// write has touched them again: the committed data now holds them.
func (o *overlay) drop(applied []*proposal, last uint64) {
	if o.l == nil {
		return
	}
	for _, p := range applied {
		o.l.Forget(p.entry.Ops, last)
		o.k.drop(p.entry.Ops, last)
	}
}

// setPriors sets the Prior of each put in ops (logrec.Op.Prior) that the
// leader knows from memory: from the overlay, the rows of its unapplied
// writes, or else from the committed data's row cache and key filter
// (storage.DB.PriorFromMemory), never a read of the store: a plain SET
// reads nothing to be sequenced, and every node then applies it without
// reading the row it replaces. The caller holds seqMu and has not yet
// added ops to the overlay, so the overlay over the committed rows is the
// data as of the entry before ops'. A put of a key an earlier op in ops
// wrote gets none (the applier knows that row from its own batch), nor
// does any put of an entry with a chunked string (storage applies those
// in parts, and reads). key is a reused buffer for the metadata row keys;
// setPriors returns it.
func (o *overlay) setPriors(ops []logrec.Op, db *storage.DB, key []byte) []byte {
	for i := range ops {
		if op := &ops[i]; op.Kind == logrec.OpPut && len(op.Value) > keyspace.ChunkThreshold {
			return key
		}
	}
	// wrote: the keys whose metadata row an earlier op of ops wrote, for
	// entries of more than linearOps ops (a smaller one, a pipeline's,
	// looks back through its ops: no allocation); flushed: an earlier op
	// was a FLUSHALL.
	var wrote map[string]struct{}
	flushed := false
	for i := range ops {
		op := &ops[i]
		switch op.Kind {
		case logrec.OpFlushAll:
			flushed = true
			continue
		case logrec.OpSubPut, logrec.OpSubDel, logrec.OpFunctions:
			continue
		}
		if flushed || wroteBefore(ops, i, wrote) {
			continue
		}
		if len(ops) > linearOps {
			if wrote == nil {
				wrote = make(map[string]struct{}, len(ops))
			}
			wrote[string(op.Key)] = struct{}{}
		}
		if op.Kind != logrec.OpPut {
			continue // a delete, meta or drop: its metadata row only
		}
		key = keyspace.AppendMetaKey(key[:0], op.Key)
		if o.l != nil {
			if row, long, held := o.l.Own(key); held {
				if !long {
					op.Prior = storage.PriorOfRow(row)
				}
				continue
			}
		}
		op.Prior = db.PriorFromMemory(key)
	}
	return key
}

// linearOps: setPriors looks for a key among the earlier ops of an entry
// of at most this many ops, and keeps a set of them beyond.
const linearOps = 32

// wroteBefore reports whether an op of ops before i wrote the metadata row
// of ops[i]'s key: in wrote when there are more than linearOps ops.
func wroteBefore(ops []logrec.Op, i int, wrote map[string]struct{}) bool {
	if len(ops) > linearOps {
		_, ok := wrote[string(ops[i].Key)]
		return ok
	}
	for j := range ops[:i] {
		switch ops[j].Kind {
		case logrec.OpPut, logrec.OpDelete, logrec.OpMeta, logrec.OpDrop:
			if bytes.Equal(ops[j].Key, ops[i].Key) {
				return true
			}
		}
	}
	return false
}

// overlayView reads uncommitted writes first, then the committed data: a
// keyspace.Reader over the overlay's layer on the committed rows. lsn is
// the LSN the command being sequenced will get, the version of any
// collection it creates.
//
// It also notes what the command read (note): the last entry in the
// overlay that touched a key it read (read), or that it read rows of
// more than one key at a time (wide: a scan of the keyspace), so that a
// command that logs nothing waits only for the entries it read; and for
// a command whose reply depends only on its keys' shape
// (commands.Result.ShapeOnly), the last entry that changed the shape of
// a key it read or wrote a sub-key row it read by point (shape), unless
// it read rows otherwise (byShape false).
type overlayView struct {
	o       overlay
	base    storage.View
	lsn     uint64
	read    uint64
	shape   uint64
	wide    bool
	unshape bool // read rows other than metadata rows and point sub-key reads
	rows    readRows
	// sub builds a sub-key row key for the layer's WrittenAt, in buf
	// unless it is longer.
	sub []byte
	buf [64]byte
}

var _ keyspace.View = (*overlayView)(nil)

// note records that the command read key's rows.
func (v *overlayView) note(key []byte) {
	if v.o.k != nil {
		last, _ := v.o.k.of(key)
		v.read = max(v.read, last)
	}
	v.unshape = true
}

// noteMeta records that the command read key's metadata row.
func (v *overlayView) noteMeta(key []byte) {
	if v.o.k != nil {
		last, shape := v.o.k.of(key)
		v.read, v.shape = max(v.read, last), max(v.shape, shape)
	}
}

// noteSub records that the command read the sub-key row (key, version,
// sub) by point.
func (v *overlayView) noteSub(key []byte, version uint64, sub []byte) {
	if v.o.k == nil {
		return
	}
	last, shape := v.o.k.of(key)
	v.read, v.shape = max(v.read, last), max(v.shape, shape)
	if last == 0 || last <= v.shape {
		return // nothing in flight wrote a row of key after its shape
	}
	if v.sub == nil {
		v.sub = v.buf[:0]
	}
	v.sub = append(keyspace.AppendSubPrefix(v.sub[:0], key, version), sub...)
	v.shape = max(v.shape, v.o.l.WrittenAt(v.sub))
}

// observed is the last LSN the command's reply may depend on, when it
// logs nothing: every entry before it when it read wide, else the last
// entry that touched a key it read, or with shapeOnly
// (commands.Result.ShapeOnly) and only metadata and point sub-key reads,
// the last that changed what it read of them.
func (v *overlayView) observed(shapeOnly bool) uint64 {
	switch {
	case v.wide:
		return v.lsn - 1
	case shapeOnly && !v.unshape:
		return v.shape
	}
	return v.read
}

// noteRow notes the key of the row at k (a metadata or sub-key row);
// any other row is wide.
func (v *overlayView) noteRow(k []byte) {
	switch {
	case len(k) > 0 && k[0] == keyspace.PrefixMeta:
		v.note(k[1:])
	case len(k) > 0 && k[0] == keyspace.PrefixSub:
		key, _, _, err := keyspace.ParseSubKey(k)
		if err != nil {
			v.wide = true
			return
		}
		v.note(key)
	default:
		v.wide = true
	}
}

// noteSpan notes the key of the rows in [lo, hi) when they are sub-key
// rows of one key (a collection's span); any other span is wide.
func (v *overlayView) noteSpan(lo, hi []byte) {
	if len(lo) > 0 && lo[0] == keyspace.PrefixSub {
		if key, _, _, err := keyspace.ParseSubKey(lo); err == nil && bytes.HasPrefix(hi, lo[:5+len(key)]) {
			v.note(key)
			return
		}
	}
	v.wide = true
}

// readRows is the rows a command reads through View.Rows (transactions,
// scripts and pipelines layer their own writes over them; list commands
// read them): each read noted by the row keys it names.
type readRows struct {
	v *overlayView
	r keyspace.Rows
}

func (r *readRows) Get(k []byte) ([]byte, bool, error) {
	r.v.noteRow(k)
	return r.r.Get(k)
}

func (r *readRows) Iter(lo, hi []byte, fn func(k, v []byte) bool) error {
	r.v.noteSpan(lo, hi)
	return r.r.Iter(lo, hi, fn)
}

func (r *readRows) IterReverse(lo, hi []byte, fn func(k, v []byte) bool) error {
	r.v.noteSpan(lo, hi)
	return r.r.IterReverse(lo, hi, fn)
}

func (v *overlayView) reader() keyspace.Reader {
	r := keyspace.Reader{R: v.base.Rows(), NowMs: v.base.NowMs, LSN: v.lsn}
	if v.o.l != nil && v.o.l.Len() > 0 {
		v.o.l.SetBase(r.R)
		r.R = v.o.l
	}
	if v.o.h != nil {
		v.o.h.SetBase(r.R)
		r.R = v.o.h
	}
	return r
}

func (v *overlayView) Get(key []byte) (keyspace.Value, bool, error) {
	v.noteMeta(key)
	return v.reader().Get(key)
}

// Scan merges the overlay into the committed keys. Write commands seldom
// scan, so this serves correctness, not speed.
func (v *overlayView) Scan(start []byte, fn func(key []byte, val keyspace.Value) bool) error {
	v.wide = true
	return v.reader().Scan(start, fn)
}

func (v *overlayView) Sub(key []byte, version uint64, sub []byte) ([]byte, bool, error) {
	v.noteSub(key, version, sub)
	return v.reader().Sub(key, version, sub)
}

func (v *overlayView) SubScan(key []byte, version uint64, start []byte, fn func(sub, val []byte) bool) error {
	v.note(key)
	return v.reader().SubScan(key, version, start, fn)
}

func (v *overlayView) SubScanReverse(key []byte, version uint64, end []byte, fn func(sub, val []byte) bool) error {
	v.note(key)
	return v.reader().SubScanReverse(key, version, end, fn)
}

// SubDeleted is the overlay hints' count of the rows of (key, version)
// deleted one by one (commands.TombstoneCounter).
func (v *overlayView) SubDeleted(key []byte, version uint64) uint64 {
	v.note(key)
	if v.o.h == nil {
		return 0
	}
	return v.o.h.Deleted(key, version)
}

// ListPop reads a list's element for a pop through the overlay hints'
// runs (commands.ListPopper); a point read without hints.
func (v *overlayView) ListPop(key []byte, version, i uint64, tail bool) ([]byte, bool, error) {
	if v.o.h == nil {
		return v.Sub(key, version, keyspace.ListIndexSub(i))
	}
	v.note(key)
	v.reader() // the hints' base, at this command's clock
	return v.o.h.ListPop(key, version, i, tail)
}

// SetSample is the overlay hints' sample of a set's members drawn ahead
// (commands.SampleKeeper); a throwaway one without hints.
func (v *overlayView) SetSample(key []byte) *keyspace.Sample {
	v.note(key)
	if v.o.h == nil {
		return &keyspace.Sample{}
	}
	return v.o.h.Sample(key)
}

// Rows are the rows under the view, each read noted (readRows).
func (v *overlayView) Rows() keyspace.Rows {
	v.rows = readRows{v: v, r: v.reader().R}
	return &v.rows
}

func (v *overlayView) Now() int64         { return v.base.NowMs }
func (v *overlayView) NewVersion() uint64 { return v.lsn }
