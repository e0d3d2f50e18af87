package cmpxchg

// smallMap maps the few keys one command touches (the keys a plan read, the
// sessions whose tally it changed) to what it found. Up to smallPlan
// entries it is a slice searched in order, made at the first set; beyond, a
// map. A Go map made for one or two entries allocates a whole group of
// eight slots, which for a plan's 112-byte reads was over a kilobyte per
// command, the largest allocation of a lock's Apply.
type smallMap[V any] struct {
	entries []smallEntry[V]
	index   map[string]V
}

type smallEntry[V any] struct {
	key string
	val V
}

func (m *smallMap[V]) get(key string) (V, bool) {
	if m.index != nil {
		v, ok := m.index[key]
		return v, ok
	}
	for i := range m.entries {
		if m.entries[i].key == key {
			return m.entries[i].val, true
		}
	}
	var zero V
	return zero, false
}

func (m *smallMap[V]) set(key string, v V) {
	if m.index != nil {
		m.index[key] = v
		return
	}
	for i := range m.entries {
		if m.entries[i].key == key {
			m.entries[i].val = v
			return
		}
	}
	if m.entries == nil {
		m.entries = make([]smallEntry[V], 0, 2)
	}
	m.entries = append(m.entries, smallEntry[V]{key, v})
	if len(m.entries) > smallPlan {
		m.index = make(map[string]V, len(m.entries))
		for _, e := range m.entries {
			m.index[e.key] = e.val
		}
		m.entries = nil
	}
}
