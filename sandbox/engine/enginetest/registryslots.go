package enginetest

import (
	"errors"
	"net"
	"sync"
)

// labd's engine reaches only the registries it is configured to allow
// (--allowed-registry), and the pair's engine starts before any test
// starts a registry. So the harness holds a few loopback listeners for the
// whole test binary, the pair's engine allows exactly those, and each
// test's registry is served behind a free one: explicit configuration,
// no port ever reused by another process.

const registrySlotCount = 8

// RegistrySlot is one held loopback address; while taken, its connections
// go to the taker's handler, otherwise they are closed at once.
type RegistrySlot struct {
	ln    net.Listener
	mu    sync.Mutex
	serve func(net.Conn)
	taken bool
	wg    sync.WaitGroup // handlers running
}

var slots struct {
	once sync.Once
	err  error
	mu   sync.Mutex
	list []*RegistrySlot
	next int
}

func registrySlots() ([]*RegistrySlot, error) {
	slots.once.Do(func() {
		for range registrySlotCount {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				slots.err = err
				return
			}
			s := &RegistrySlot{ln: ln}
			go s.accept()
			slots.list = append(slots.list, s)
		}
	})
	return slots.list, slots.err
}

// AllowedRegistryArgs are labd flags allowing every slot.
func AllowedRegistryArgs() ([]string, error) {
	list, err := registrySlots()
	if err != nil {
		return nil, err
	}
	var args []string
	for _, s := range list {
		args = append(args, "--allowed-registry", s.Addr())
	}
	return args, nil
}

// TakeRegistrySlot returns a free slot, the least recently taken first
// (so a kept-alive connection to the last registry there is long gone).
func TakeRegistrySlot() (*RegistrySlot, error) {
	list, err := registrySlots()
	if err != nil {
		return nil, err
	}
	slots.mu.Lock()
	defer slots.mu.Unlock()
	for range list {
		s := list[slots.next%len(list)]
		slots.next++
		s.mu.Lock()
		if !s.taken {
			s.taken = true
			s.mu.Unlock()
			return s, nil
		}
		s.mu.Unlock()
	}
	return nil, errors.New("all registry slots are taken: release them (t.Cleanup) or raise registrySlotCount")
}

// Addr is the slot's address (127.0.0.1:port).
func (s *RegistrySlot) Addr() string { return s.ln.Addr().String() }

// Serve hands the slot's new connections to f, each in a goroutine.
func (s *RegistrySlot) Serve(f func(net.Conn)) {
	s.mu.Lock()
	s.serve = f
	s.mu.Unlock()
}

// Release stops handing connections over, waits for the running
// handlers and frees the slot.
func (s *RegistrySlot) Release() {
	s.mu.Lock()
	s.serve = nil
	s.mu.Unlock()
	s.wg.Wait()
	s.mu.Lock()
	s.taken = false
	s.mu.Unlock()
}

func (s *RegistrySlot) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		f := s.serve
		if f != nil {
			s.wg.Add(1)
		}
		s.mu.Unlock()
		if f == nil {
			c.Close()
			continue
		}
		go func() {
			defer s.wg.Done()
			f(c)
		}()
	}
}
