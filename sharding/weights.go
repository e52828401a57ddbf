package sharding

import (
	"encoding/binary"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Gossiped weights (BalanceSeries).
//
// A member measures only the targets it scrapes, but every member must
// weigh every target alike. Each member therefore publishes a report: for
// every target it owns, and for every target it owned whose new owner has
// not reported it yet, the target's weight class (balance.go) and whether it
// owns it. Entries are keyed by the low 32 bits of the ownership key (two
// targets sharing them weigh alike, on every member: harmless) and take 5
// bytes: 4 key bytes and a byte holding the class (bits 0-6) and the owned
// flag (bit 7).
//
// The WeightBoard holds the latest report of every member, each stamped
// with its author's incarnation (start time) and a version counting its
// changes. memberlist carries them two ways: a changed report is broadcast
// as version steps of at most weightChunk entries (memberlist's
// TransmitLimitedQueue, piggybacked on gossip), and every push/pull
// exchanges the full board (anti-entropy for a lost step, and the state a
// joining member starts from). A report wins over one with a lower
// (incarnation, version).
//
// The digest of the reports in use is part of the handoff view: a member
// holds a target it gained until every participant released the same
// weights, so two members lacking each other's latest report never both
// scrape a target.

// weightKey is the part of an ownership key a report carries.
func weightKey(key uint64) uint32 { return uint32(key) }

// weightEntry is one target of a report.
type weightEntry struct {
	class uint8 // 1..127
	owned bool
}

func (e weightEntry) byte() byte {
	b := e.class & 0x7f
	if e.owned {
		b |= 0x80
	}
	return b
}

func entryOf(b byte) weightEntry { return weightEntry{class: b & 0x7f, owned: b&0x80 != 0} }

// weightReport is one member's report.
type weightReport struct {
	incarnation, version uint64
	entries              map[uint32]weightEntry
}

func (r *weightReport) newer(inc, ver uint64) bool {
	return inc > r.incarnation || (inc == r.incarnation && ver > r.version)
}

// weightChunk bounds the entries of one broadcast step: 5 bytes each, a
// step fits a UDP gossip packet.
const weightChunk = 200

// WeightBoard is the cluster's gossiped weight reports. It is safe for
// concurrent use.
type WeightBoard struct {
	self        string
	incarnation uint64

	mtx     sync.Mutex
	reports map[string]*weightReport
	// pending are broadcast steps not yet handed to memberlist.
	pending [][]byte
	changed func() // signals a change of another member's report
}

// NewWeightBoard returns an empty board for member self. changed (may be
// nil) is called after another member's report changed.
func NewWeightBoard(self string, changed func()) *WeightBoard {
	return &WeightBoard{self: self, incarnation: uint64(time.Now().UnixNano()), reports: map[string]*weightReport{}, changed: changed}
}

// Publish replaces this member's report with entries and queues the
// difference for broadcasting. It reports whether anything changed.
func (w *WeightBoard) Publish(entries map[uint32]weightEntry) bool {
	w.mtx.Lock()
	defer w.mtx.Unlock()
	own := w.reports[w.self]
	if own == nil {
		own = &weightReport{incarnation: w.incarnation, entries: map[uint32]weightEntry{}}
		w.reports[w.self] = own
	}
	var diff []uint32
	for k, e := range entries {
		if old, ok := own.entries[k]; !ok || old != e {
			diff = append(diff, k)
		}
	}
	for k := range own.entries {
		if _, ok := entries[k]; !ok {
			diff = append(diff, k)
		}
	}
	if len(diff) == 0 {
		return false
	}
	slices.Sort(diff)
	for len(diff) > 0 {
		n := min(len(diff), weightChunk)
		step := w.encodeStep(own.version, diff[:n], entries)
		own.version++
		w.pending = append(w.pending, step)
		diff = diff[n:]
	}
	own.entries = entries
	return true
}

// Message kinds.
const (
	msgWeightStep = 'w' // a version step of one report
)

// encodeStep encodes the step from version base to base+1 of this member's
// report: entries of keys absent from entries are removed (class 0).
func (w *WeightBoard) encodeStep(base uint64, keys []uint32, entries map[uint32]weightEntry) []byte {
	b := []byte{msgWeightStep}
	b = binary.AppendUvarint(b, uint64(len(w.self)))
	b = append(b, w.self...)
	b = binary.AppendUvarint(b, w.incarnation)
	b = binary.AppendUvarint(b, base)
	for _, k := range keys {
		b = binary.LittleEndian.AppendUint32(b, k)
		b = append(b, entries[k].byte()) // absent: 0, removed
	}
	return b
}

var errWeightMsg = errors.New("malformed weight message")

// applyStep applies a broadcast step; a step that does not follow the
// report held is ignored (push/pull brings the report up to date).
func (w *WeightBoard) applyStep(msg []byte) error {
	if len(msg) == 0 || msg[0] != msgWeightStep {
		return errWeightMsg
	}
	name, rest, err := readString(msg[1:])
	if err != nil {
		return err
	}
	inc, n := binary.Uvarint(rest)
	if n <= 0 {
		return errWeightMsg
	}
	base, m := binary.Uvarint(rest[n:])
	if m <= 0 || (len(rest)-n-m)%5 != 0 {
		return errWeightMsg
	}
	body := rest[n+m:]
	if name == w.self {
		return nil
	}
	w.mtx.Lock()
	r := w.reports[name]
	switch {
	case r == nil && base == 0:
		r = &weightReport{incarnation: inc, entries: map[uint32]weightEntry{}}
		w.reports[name] = r
	case r == nil, r.incarnation != inc, r.version != base:
		w.mtx.Unlock()
		return nil // not the next step
	}
	for i := 0; i < len(body); i += 5 {
		k, e := binary.LittleEndian.Uint32(body[i:]), entryOf(body[i+4])
		if e.class == 0 {
			delete(r.entries, k)
		} else {
			r.entries[k] = e
		}
	}
	r.version = base + 1
	w.mtx.Unlock()
	w.signal()
	return nil
}

func (w *WeightBoard) signal() {
	if w.changed != nil {
		w.changed()
	}
}

func readString(b []byte) (string, []byte, error) {
	l, n := binary.Uvarint(b)
	if n <= 0 || uint64(len(b)-n) < l {
		return "", nil, errWeightMsg
	}
	return string(b[n : n+int(l)]), b[n+int(l):], nil
}

// takeSteps returns the queued broadcast steps and forgets them.
func (w *WeightBoard) takeSteps() [][]byte {
	w.mtx.Lock()
	defer w.mtx.Unlock()
	p := w.pending
	w.pending = nil
	return p
}

// encodeState encodes every report held, for push/pull.
func (w *WeightBoard) encodeState() []byte {
	w.mtx.Lock()
	defer w.mtx.Unlock()
	b := binary.AppendUvarint(nil, uint64(len(w.reports)))
	for _, name := range slices.Sorted(mapKeys(w.reports)) {
		r := w.reports[name]
		b = binary.AppendUvarint(b, uint64(len(name)))
		b = append(b, name...)
		b = binary.AppendUvarint(b, r.incarnation)
		b = binary.AppendUvarint(b, r.version)
		b = binary.AppendUvarint(b, uint64(len(r.entries)))
		for k, e := range r.entries {
			b = binary.LittleEndian.AppendUint32(b, k)
			b = append(b, e.byte())
		}
	}
	return b
}

// mergeState takes from a push/pull state every report newer than the one
// held (never this member's own).
func (w *WeightBoard) mergeState(b []byte) error {
	count, n := binary.Uvarint(b)
	if n <= 0 {
		return errWeightMsg
	}
	b = b[n:]
	changed := false
	w.mtx.Lock()
	defer func() {
		w.mtx.Unlock()
		if changed {
			w.signal()
		}
	}()
	for range count {
		name, rest, err := readString(b)
		if err != nil {
			return err
		}
		var hdr [3]uint64
		for i := range hdr {
			v, m := binary.Uvarint(rest)
			if m <= 0 {
				return errWeightMsg
			}
			hdr[i], rest = v, rest[m:]
		}
		if uint64(len(rest)) < 5*hdr[2] {
			return errWeightMsg
		}
		body := rest[:5*hdr[2]]
		b = rest[5*hdr[2]:]
		r := w.reports[name]
		if name == w.self || (r != nil && !r.newer(hdr[0], hdr[1])) {
			continue
		}
		nr := &weightReport{incarnation: hdr[0], version: hdr[1], entries: make(map[uint32]weightEntry, hdr[2])}
		for i := 0; i < len(body); i += 5 {
			nr.entries[binary.LittleEndian.Uint32(body[i:])] = entryOf(body[i+4])
		}
		w.reports[name] = nr
		changed = true
	}
	return nil
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Forget drops the report of a member gone for good.
func (w *WeightBoard) Forget(name string) {
	w.mtx.Lock()
	delete(w.reports, name)
	w.mtx.Unlock()
}

// weightTable is what the board says, for one recompute: per key the
// class (the highest any report gives) and the participants that report
// owning it (sorted).
type weightTable struct {
	classes map[uint32]uint8
	owners  map[uint32][]string
	// digest identifies the reports in use (author, incarnation,
	// version): equal digests mean equal tables.
	digest uint64
}

// table builds the weight table from the reports of members (the
// participants, sorted); reports of others (a member that left and
// whose targets nobody measured yet) give classes only.
func (w *WeightBoard) table(participants []string) weightTable {
	w.mtx.Lock()
	defer w.mtx.Unlock()
	t := weightTable{classes: map[uint32]uint8{}, owners: map[uint32][]string{}}
	d := xxhash.New()
	var buf [16]byte
	for _, name := range slices.Sorted(mapKeys(w.reports)) {
		r := w.reports[name]
		_, _ = d.WriteString(name)
		binary.LittleEndian.PutUint64(buf[:], r.incarnation)
		binary.LittleEndian.PutUint64(buf[8:], r.version)
		_, _ = d.Write(buf[:])
		_, participant := slices.BinarySearch(participants, name)
		for k, e := range r.entries {
			if participant && e.owned {
				t.owners[k] = append(t.owners[k], name)
			}
			if c, ok := t.classes[k]; !ok || e.class > c {
				t.classes[k] = e.class
			}
		}
	}
	t.digest = d.Sum64()
	return t
}
