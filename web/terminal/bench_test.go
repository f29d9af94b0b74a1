package terminal

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"
)

// benchConn dials ts and returns a client read synchronously.
func benchConn(b *testing.B, ts *testServer) *Conn {
	b.Helper()
	ws, _, err := dialRaw(b, ts.wsURL(), nil)
	if err != nil {
		b.Fatalf("dial: %v", err)
	}
	b.Cleanup(func() { ws.Close() })
	return NewConn(ws)
}

// readUntil reads messages until the output seen so far ends with or
// contains marker; it keeps only a short tail so markers split across
// frames are still found.
func readUntil(b *testing.B, c *Conn, marker []byte) int {
	b.Helper()
	var tail []byte
	n := 0
	for {
		m, err := c.ReadMessage()
		if err != nil {
			b.Fatalf("read: %v", err)
		}
		out, ok := m.(Output)
		if !ok {
			continue
		}
		n += len(out)
		tail = append(tail, out...)
		if bytes.Contains(tail, marker) {
			return n
		}
		if len(tail) > len(marker) {
			tail = append(tail[:0], tail[len(tail)-len(marker):]...)
		}
	}
}

func benchSetup(b *testing.B) *Conn {
	sh := startShell(b)
	hub := NewHub(sh, HubOptions{})
	ts := newTestServer(b, hub, UpgradeOptions{})
	c := benchConn(b, ts)
	readUntil(b, c, []byte("labd$ "))
	return c
}

// BenchmarkEcho measures a keystroke's round trip: websocket → pty → cat
// (raw mode, so each byte is echoed by cat itself) → pty → websocket.
func BenchmarkEcho(b *testing.B) {
	c := benchSetup(b)
	if err := c.WriteMessage(Input("stty raw -echo; echo RE''ADY; cat\r")); err != nil {
		b.Fatal(err)
	}
	readUntil(b, c, []byte("READY"))
	lat := make([]time.Duration, 0, b.N)
	for i := 0; b.Loop(); i++ {
		k := []byte{'a' + byte(i%26)}
		start := time.Now()
		if err := c.WriteMessage(Input(k)); err != nil {
			b.Fatal(err)
		}
		readUntil(b, c, k)
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	ms := func(q float64) float64 {
		return float64(lat[int(q*float64(len(lat)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(ms(0.50), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
}

// BenchmarkThroughput measures pty → client output bandwidth.
func BenchmarkThroughput(b *testing.B) {
	const size = 16 << 20
	c := benchSetup(b)
	b.SetBytes(size)
	for i := 0; b.Loop(); i++ {
		cmd := fmt.Sprintf("head -c %d /dev/zero; echo EN''D%d\r", size, i)
		if err := c.WriteMessage(Input(cmd)); err != nil {
			b.Fatal(err)
		}
		readUntil(b, c, fmt.Appendf(nil, "END%d", i))
	}
}

// BenchmarkRawPTY is the baseline for BenchmarkThroughput: the same
// command read straight from the pty, without hub or websocket.
func BenchmarkRawPTY(b *testing.B) {
	const size = 16 << 20
	sh := startShell(b)
	buf := make([]byte, 64<<10)
	until := func(marker []byte) {
		var tail []byte
		for {
			n, err := sh.Read(buf)
			if err != nil {
				b.Fatal(err)
			}
			tail = append(tail, buf[:n]...)
			if bytes.Contains(tail, marker) {
				return
			}
			if len(tail) > len(marker) {
				tail = append(tail[:0], tail[len(tail)-len(marker):]...)
			}
		}
	}
	until([]byte("labd$ "))
	b.SetBytes(size)
	for i := 0; b.Loop(); i++ {
		fmt.Fprintf(sh, "head -c %d /dev/zero; echo EN''D%d\r", size, i)
		until(fmt.Appendf(nil, "END%d", i))
	}
}
