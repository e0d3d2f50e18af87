package kv

// SetScanHook has fn told, after every prefix scan (Store.List and
// Batch.Scan), how many internal point keys the scan's iterator stepped
// over, deleted ones included (Pebble's InternalIteratorStats.PointCount).
func (s *Store) SetScanHook(fn func(points uint64)) { s.scanHook = fn }

// SetFloorLimit bounds the floors kept (floors.go), to exercise eviction.
func (s *Store) SetFloorLimit(n int) { s.floors.limit = n }
