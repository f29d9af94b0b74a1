package engine

import (
	"sync"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
)

// eventBus keeps recent events for `docker events --since` and fans new
// ones out to subscribers, like dockerd's daemon/events.
type eventBus struct {
	mu   sync.Mutex
	buf  []events.Message
	subs map[chan events.Message]filters.Args
	max  int
	// onPublish sees every event, in order (the engine's records).
	onPublish func(events.Message)
}

func newEventBus() *eventBus {
	return &eventBus{subs: map[chan events.Message]filters.Args{}, max: 256}
}

func (b *eventBus) publish(typ events.Type, action events.Action, id string, attrs map[string]string) {
	now := time.Now()
	m := events.Message{
		Type:     typ,
		Action:   action,
		Actor:    events.Actor{ID: id, Attributes: attrs},
		Scope:    "local",
		Time:     now.Unix(),
		TimeNano: now.UnixNano(),
	}
	// The deprecated top-level fields are still filled by dockerd for
	// images, and old clients print them.
	m.Status = string(action)
	m.ID = id
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.onPublish != nil {
		b.onPublish(m)
	}
	b.buf = append(b.buf, m)
	if len(b.buf) > b.max {
		b.buf = b.buf[len(b.buf)-b.max:]
	}
	for ch, f := range b.subs {
		if !matchEvent(m, f) {
			continue
		}
		select {
		case ch <- m:
		default: // a slow reader loses events rather than blocking builds
		}
	}
}

func (b *eventBus) subscribe(since, until time.Time, f filters.Args) ([]events.Message, <-chan events.Message, func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var past []events.Message
	// Like dockerd, history is replayed only for --since/--until.
	replay := b.buf
	if since.IsZero() && until.IsZero() {
		replay = nil
	}
	for _, m := range replay {
		t := time.Unix(0, m.TimeNano)
		if !since.IsZero() && t.Before(since) {
			continue
		}
		if !until.IsZero() && t.After(until) {
			continue
		}
		if matchEvent(m, f) {
			past = append(past, m)
		}
	}
	ch := make(chan events.Message, 64)
	b.subs[ch] = f
	var once sync.Once
	return past, ch, func() {
		once.Do(func() {
			b.mu.Lock()
			delete(b.subs, ch)
			b.mu.Unlock()
		})
	}
}

// matchEvent applies the filters `docker events --filter` sends that make
// sense for image events: type, event/action, image, label.
func matchEvent(m events.Message, f filters.Args) bool {
	if f.Len() == 0 {
		return true
	}
	if f.Contains("type") && !f.ExactMatch("type", string(m.Type)) {
		return false
	}
	if f.Contains("event") && !f.ExactMatch("event", string(m.Action)) {
		return false
	}
	if f.Contains("image") {
		name := m.Actor.Attributes["name"]
		if !f.ExactMatch("image", m.Actor.ID) && !f.ExactMatch("image", name) && !f.ExactMatch("image", stripTag(name)) {
			return false
		}
	}
	if f.Contains("container") {
		if m.Type != events.ContainerEventType || !f.ExactMatch("container", m.Actor.ID) && !f.ExactMatch("container", m.Actor.Attributes["name"]) && !matchPrefix(f.Get("container"), m.Actor.ID) {
			return false
		}
	}
	if f.Contains("label") && !f.MatchKVList("label", m.Actor.Attributes) {
		return false
	}
	if f.Contains("scope") && !f.ExactMatch("scope", m.Scope) {
		return false
	}
	return true
}

func stripTag(name string) string {
	for i := len(name) - 1; i >= 0; i-- {
		switch name[i] {
		case ':':
			return name[:i]
		case '/':
			return name
		}
	}
	return name
}

func matchPrefix(prefixes []string, id string) bool {
	for _, p := range prefixes {
		if len(p) >= 1 && len(p) <= len(id) && id[:len(p)] == p {
			return true
		}
	}
	return false
}
