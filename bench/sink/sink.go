// Package sink carries delivery reports from the consumers under test to the
// benchmark harness over one TCP connection per process.
//
// A report is one text line:
//
//	<consumerID> <shardID-or-key> <key> <n> <putNanos> <doneNanos>
//
// doneNanos is stamped by the consumer when it delivers the command, so the
// harness measures the consumer and not the trip through this socket.
// Consumer IDs, shard ids and keys must not contain white space.
package sink

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// FlushInterval is how long a report may sit in the writer's buffer. It is
// short next to every latency the harness measures, and long enough that a
// drain at tens of thousands of commands per second is not one syscall per
// line.
const FlushInterval = 5 * time.Millisecond

// Delivery is one parsed report.
type Delivery struct {
	Consumer string
	// Shard is the shard id when the consumer knows it, else the partition key.
	Shard     string
	Key       string
	N         int64
	PutNanos  int64
	DoneNanos int64
}

// Format renders d as a report line, newline included.
func (d Delivery) Format() string {
	return fmt.Sprintf("%s %s %s %d %d %d\n", d.Consumer, d.Shard, d.Key, d.N, d.PutNanos, d.DoneNanos)
}

// Parse reads one report line (without its newline).
func Parse(line string) (Delivery, error) {
	f := strings.Fields(line)
	if len(f) != 6 {
		return Delivery{}, fmt.Errorf("sink: want 6 fields, got %d in %q", len(f), line)
	}
	var nums [3]int64
	for i, s := range f[3:] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return Delivery{}, fmt.Errorf("sink: field %d of %q: %w", i+4, line, err)
		}
		nums[i] = v
	}
	return Delivery{Consumer: f[0], Shard: f[1], Key: f[2], N: nums[0], PutNanos: nums[1], DoneNanos: nums[2]}, nil
}

// Writer sends reports to the harness. It dials on first use (a sauna
// responder's constructor must not do I/O), buffers, and flushes every
// FlushInterval and on Close. It is safe for concurrent use.
type Writer struct {
	addr, consumer string

	mu     sync.Mutex
	conn   net.Conn
	buf    *bufio.Writer
	dirty  bool
	err    error
	closed bool
	stop   chan struct{}
	done   chan struct{}
}

// NewWriter returns a writer that reports as consumer to the sink at addr
// (host:port).
func NewWriter(addr, consumer string) *Writer {
	return &Writer{addr: addr, consumer: consumer}
}

// Report records one delivery, stamping it with the current time.
func (w *Writer) Report(shard, key string, n, putNanos int64) error {
	done := time.Now().UnixNano()
	line := Delivery{Consumer: w.consumer, Shard: shard, Key: key, N: n, PutNanos: putNanos, DoneNanos: done}.Format()
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.connectLocked(); err != nil {
		return err
	}
	if _, err := w.buf.WriteString(line); err != nil {
		w.err = err
		return err
	}
	w.dirty = true
	return nil
}

func (w *Writer) connectLocked() error {
	switch {
	case w.closed:
		return errors.New("sink: writer closed")
	case w.err != nil:
		return w.err
	case w.conn != nil:
		return nil
	}
	conn, err := net.DialTimeout("tcp", w.addr, 5*time.Second)
	if err != nil {
		// Not sticky: the next report tries again.
		return fmt.Errorf("sink: %w", err)
	}
	w.conn = conn
	w.buf = bufio.NewWriterSize(conn, 64<<10)
	w.stop = make(chan struct{})
	w.done = make(chan struct{})
	go w.flushLoop()
	return nil
}

func (w *Writer) flushLoop() {
	defer close(w.done)
	t := time.NewTicker(FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.mu.Lock()
			if w.dirty && w.err == nil {
				if err := w.buf.Flush(); err != nil {
					w.err = err
				}
				w.dirty = false
			}
			w.mu.Unlock()
		}
	}
}

// Close flushes what is buffered and closes the connection.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	conn, stop, done := w.conn, w.stop, w.done
	var err error
	if conn != nil && w.err == nil {
		err = w.buf.Flush()
	}
	w.mu.Unlock()
	if conn == nil {
		return nil
	}
	close(stop)
	<-done
	if cerr := conn.Close(); err == nil {
		err = cerr
	}
	return err
}

// Server accepts report connections and hands every parsed line to a
// callback. It is what the harness listens with.
type Server struct {
	ln      net.Listener
	handle  func(Delivery)
	onError func(error)

	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// Listen starts a server on addr (use "127.0.0.1:0"). handle is called from
// one goroutine per connection, so it must be safe for concurrent use;
// onError (may be nil) gets malformed lines.
func Listen(addr string, handle func(Delivery), onError func(error)) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if onError == nil {
		onError = func(error) {}
	}
	s := &Server{ln: ln, handle: handle, onError: onError, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr is the host:port consumers dial.
func (s *Server) Addr() string { return s.ln.Addr().String() }

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		s.mu.Lock()
		if s.closed {
			// Close has already swept the connections.
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(c)
	}
}

func (s *Server) serve(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		d, err := Parse(sc.Text())
		if err != nil {
			s.onError(err)
			continue
		}
		s.handle(d)
	}
}

// Close stops accepting, closes every connection and waits for the
// connection goroutines to return.
func (s *Server) Close() error {
	err := s.ln.Close()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}
