package demo

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// Entry is one line of a worker's record: what the worker itself did. The
// verdict is computed from these and from the store, never from a summary.
//
// A worker writes an "intent" before each write that may change the store
// and a result after it, so a worker killed in between leaves an intent whose
// outcome the store alone tells.
type Entry struct {
	Op     string `json:"op"`                // see the Op* constants
	Worker string `json:"worker"`            // the worker's --id
	Req    string `json:"req,omitempty"`     // unique id of the operation, "<worker>/<seq>"
	Time   int64  `json:"t"`                 // unix milliseconds, for reading the file
	Index  uint64 `json:"index,omitempty"`   // the log index the write applied at
	Token  uint64 `json:"token,omitempty"`   // fencing token of the lock it was made under
	Lock   string `json:"lock,omitempty"`    // the lock it was made under
	Retry  int    `json:"retry,omitempty"`   // failed compares retried before this result
	WaitUS int64  `json:"wait_us,omitempty"` // lock acquisition time, microseconds
	Waited bool   `json:"waited,omitempty"`  // the lock was held by another when asked for

	// rooms
	Type string `json:"type,omitempty"`
	Room string `json:"room,omitempty"`
	// bank
	Mode   string `json:"mode,omitempty"`
	From   string `json:"from,omitempty"`
	To     string `json:"to,omitempty"`
	Amount int64  `json:"amount,omitempty"`

	Err string `json:"err,omitempty"`
}

// Record ops.
const (
	OpStart    = "start"    // the worker started (Mode, Lock TTL in Err-free fields)
	OpIntent   = "intent"   // about to send the write named Req
	OpBook     = "book"     // rooms: Req booked Room of Type at Index under Token
	OpTransfer = "transfer" // bank: Req moved Amount From -> To at Index
	OpUnknown  = "unknown"  // Req's outcome could not be learned; the store tells
	OpAborted  = "aborted"  // Req was not applied (lock lost, no funds, sold out)
	OpConflict = "conflict" // a compare failed although the worker held the locks: mutual exclusion broke
	OpAcquire  = "acquire"  // a lock was acquired (WaitUS, Waited, Token)
	OpSoldOut  = "soldout"  // rooms: Type found sold out
	OpStop     = "stop"     // the worker stopped cleanly
)

// Recorder appends entries to a JSON-lines file, one write(2) per entry, so
// a SIGKILL loses at most the entry being written and never garbles one.
type Recorder struct {
	mu     sync.Mutex
	f      *os.File
	worker string
}

// OpenRecorder opens (appending) path for worker's entries; an empty path
// records nothing.
func OpenRecorder(path, worker string) (*Recorder, error) {
	r := &Recorder{worker: worker}
	if path == "" {
		return r, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	r.f = f
	return r, nil
}

// Add records e, stamped with the worker and the time.
func (r *Recorder) Add(e Entry) error {
	if r.f == nil {
		return nil
	}
	e.Worker = r.worker
	e.Time = time.Now().UnixMilli()
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	_, err = r.f.Write(append(b, '\n'))
	return err
}

// Close closes the file.
func (r *Recorder) Close() error {
	if r.f == nil {
		return nil
	}
	return r.f.Close()
}

// ReadRecords reads every *.jsonl file in dir. A last line cut short by a
// kill is skipped; any other bad line is an error.
func ReadRecords(dir string) ([]Entry, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []Entry
	for _, name := range files {
		es, err := readRecordFile(name)
		if err != nil {
			return nil, err
		}
		out = append(out, es...)
	}
	return out, nil
}

func readRecordFile(name string) ([]Entry, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Entry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	var bad error
	line := 0
	for sc.Scan() {
		line++
		if bad != nil {
			return nil, bad // the bad line was not the last one
		}
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			bad = fmt.Errorf("%s:%d: %v", name, line, err)
			continue
		}
		out = append(out, e)
	}
	return out, sc.Err()
}
