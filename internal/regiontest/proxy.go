// Package regiontest holds the helpers of multi-region system tests: a TCP
// proxy that puts a WAN's latency, and partitions, between regions that
// all run on loopback (Proxy), and a scan of a region's data directories
// for tenant data that must not have left its residency domain
// (ScanResidency), including inside gzip-compressed Raft snapshots.
package regiontest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// chunkSize is the most one read of a proxied connection takes; inFlight
// how many read chunks one direction holds while they wait out the delay.
// Together they bound a direction's throughput to inFlight*chunkSize per
// delay (256 × 32 KiB per 40 ms: 200 MiB/s), far above what tests move.
const (
	chunkSize = 32 << 10
	inFlight  = 256
)

// Proxy forwards TCP connections from a loopback address to a target and
// delays every chunk of data by a fixed latency in each direction, so that
// a round trip through it takes at least twice the delay. Chunks are
// delivered at the time they were read plus the delay, in order: the delay
// adds latency without capping throughput at one chunk per delay.
//
// Cut partitions the proxy: live connections are dropped and new ones are
// accepted but black-holed (nothing is forwarded, nothing answered), so a
// client times out as across a real partition rather than being refused
// at once. Heal ends the partition; connections held during it are then
// forwarded, with what they sent in the meantime.
type Proxy struct {
	ln     net.Listener
	target string
	// wg counts the proxy's goroutines; Close waits for them.
	wg sync.WaitGroup

	mu     sync.Mutex
	delay  time.Duration      // guarded by mu
	cut    bool               // guarded by mu
	closed bool               // guarded by mu
	links  map[*link]struct{} // guarded by mu
	held   []net.Conn         // guarded by mu: accepted while cut
}

// NewProxy listens on listenAddr ("127.0.0.1:0", or another 127.x.y.z
// address to give each region its own) and forwards to target.
func NewProxy(listenAddr, target string, delay time.Duration) (*Proxy, error) {
	if delay < 0 {
		return nil, fmt.Errorf("regiontest: proxy to %s: negative delay %v: give 0 or more", target, delay)
	}
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return nil, fmt.Errorf("regiontest: proxy to %s: listen on %s: %w", target, listenAddr, err)
	}
	p := &Proxy{ln: ln, target: target, delay: delay, links: map[*link]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address the proxy listens on.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetDelay changes the delay of data read from now on.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = max(d, 0)
}

func (p *Proxy) currentDelay() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.delay
}

// Cut drops every live connection and black-holes new ones until Heal.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.cut = true
	links := p.takeLinks()
	p.mu.Unlock()
	for _, l := range links {
		l.close()
	}
}

// Heal ends a Cut: new connections are forwarded again, and so are those
// accepted during the cut that their clients have not closed.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.cut || p.closed {
		return
	}
	p.cut = false
	for _, c := range p.held {
		p.wg.Add(1)
		go p.forward(c)
	}
	p.held = nil
}

// Close stops the proxy: it closes the listener and every connection, and
// returns once all of the proxy's goroutines have ended.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	links := p.takeLinks()
	held := p.held
	p.held = nil
	p.mu.Unlock()
	err := p.ln.Close()
	for _, l := range links {
		l.close()
	}
	for _, c := range held {
		c.Close()
	}
	p.wg.Wait()
	return err
}

// takeLinks empties the set of live links and returns them; mu is held.
func (p *Proxy) takeLinks() []*link {
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	clear(p.links)
	return links
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient failure (too many open files): try again
			// rather than stop proxying for the rest of the test.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.mu.Lock()
		switch {
		case p.closed:
			c.Close()
		case p.cut:
			p.held = append(p.held, c)
		default:
			p.wg.Add(1)
			go p.forward(c)
		}
		p.mu.Unlock()
	}
}

// forward connects client to the target and pipes both ways.
func (p *Proxy) forward(client net.Conn) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		// The client sees its connection closed, as when the target
		// refuses it.
		client.Close()
		return
	}
	l := &link{client: client, server: server, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed || p.cut {
		p.mu.Unlock()
		l.close()
		return
	}
	p.links[l] = struct{}{}
	p.mu.Unlock()

	var dirs sync.WaitGroup
	dirs.Add(2)
	go func() { defer dirs.Done(); p.pipe(l, server, client) }()
	go func() { defer dirs.Done(); p.pipe(l, client, server) }()
	dirs.Wait()
	l.close()
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

// link is one proxied connection: the client's and the one to the target.
type link struct {
	client, server net.Conn
	once           sync.Once
	// done is closed by close, to wake goroutines waiting out a delay.
	done chan struct{}
}

func (l *link) close() {
	l.once.Do(func() {
		close(l.done)
		l.client.Close()
		l.server.Close()
	})
}

// chunk is data read from one side, due on the other at due. A nil data
// is the end of the stream.
type chunk struct {
	data []byte
	due  time.Time
}

// pipe copies src to dst, each chunk delivered a delay after it was read.
// A reader stamps chunks and a writer delivers them, so chunks wait out
// their delay together, not one after the other.
func (p *Proxy) pipe(l *link, dst, src net.Conn) {
	ch := make(chan chunk, inFlight)
	var rw sync.WaitGroup
	rw.Add(1)
	go func() {
		defer rw.Done()
		defer close(ch)
		buf := make([]byte, chunkSize)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				// A copy of the size read: small reads waiting out the
				// delay hold little memory.
				data := append([]byte(nil), buf[:n]...)
				select {
				case ch <- chunk{data: data, due: time.Now().Add(p.currentDelay())}:
				case <-l.done:
					return
				}
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					// Pass the half-close on, late like the data.
					select {
					case ch <- chunk{due: time.Now().Add(p.currentDelay())}:
					case <-l.done:
					}
				} else {
					l.close()
				}
				return
			}
		}
	}()
	defer rw.Wait()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for c := range ch {
		if wait := time.Until(c.due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-l.done:
				return
			}
		}
		if c.data == nil {
			if tc, ok := dst.(*net.TCPConn); ok {
				tc.CloseWrite()
				return
			}
			l.close()
			return
		}
		if _, err := dst.Write(c.data); err != nil {
			l.close()
			return
		}
	}
}
