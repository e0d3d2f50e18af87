package kv

import (
	"strconv"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// pebbleCollector exports Pebble's own metrics of the member's database
// (db.Metrics(), read when scraped) as cxkv_pebble_* series. It lives in kv
// because kv is the one package that knows Pebble.
type pebbleCollector struct {
	with func(func(*Store))
}

// NewCollector returns a Prometheus collector of a store's own metrics. Each
// scrape calls with, which hands the store to its argument, or does not call
// it when there is no open store (before open, after close).
func NewCollector(with func(func(*Store))) prometheus.Collector {
	return &pebbleCollector{with: with}
}

type pebbleMetric struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(*pebble.Metrics) float64
}

var pebbleMetrics = func() []pebbleMetric {
	var out []pebbleMetric
	add := func(name, help string, kind prometheus.ValueType, v func(*pebble.Metrics) float64) {
		out = append(out, pebbleMetric{prometheus.NewDesc("cxkv_pebble_"+name, help, nil, nil), kind, v})
	}
	gauge, counter := prometheus.GaugeValue, prometheus.CounterValue
	add("disk_usage_bytes", "Bytes the database occupies on disk (WAL, tables, blobs, manifests).", gauge, func(m *pebble.Metrics) float64 { return float64(m.DiskSpaceUsage()) })
	add("read_amplification", "Sublevels of L0 plus non-empty levels below: the tables a read may consult.", gauge, func(m *pebble.Metrics) float64 { return float64(m.ReadAmp()) })
	add("compactions_total", "Compactions run.", counter, func(m *pebble.Metrics) float64 { return float64(m.Compact.Count) })
	add("compaction_debt_bytes", "Estimated bytes to compact before the LSM is in shape.", gauge, func(m *pebble.Metrics) float64 { return float64(m.Compact.EstimatedDebt) })
	add("compactions_in_progress", "Compactions running now.", gauge, func(m *pebble.Metrics) float64 { return float64(m.Compact.NumInProgress) })
	add("flushes_total", "Memtable flushes.", counter, func(m *pebble.Metrics) float64 { return float64(m.Flush.Count) })
	add("memtable_bytes", "Bytes allocated by memtables.", gauge, func(m *pebble.Metrics) float64 { return float64(m.MemTable.Size) })
	add("memtables", "Memtables.", gauge, func(m *pebble.Metrics) float64 { return float64(m.MemTable.Count) })
	add("block_cache_bytes", "Bytes in the block cache.", gauge, func(m *pebble.Metrics) float64 { return float64(m.BlockCache.Size) })
	add("block_cache_hits_total", "Block cache hits.", counter, func(m *pebble.Metrics) float64 { return float64(m.BlockCache.Hits) })
	add("block_cache_misses_total", "Block cache misses.", counter, func(m *pebble.Metrics) float64 { return float64(m.BlockCache.Misses) })
	add("wal_bytes_in_total", "Logical bytes written to the WAL.", counter, func(m *pebble.Metrics) float64 { return float64(m.WAL.BytesIn) })
	add("wal_bytes_written_total", "Physical bytes written to the WAL.", counter, func(m *pebble.Metrics) float64 { return float64(m.WAL.BytesWritten) })
	add("wal_files", "Live WAL files.", gauge, func(m *pebble.Metrics) float64 { return float64(m.WAL.Files) })
	add("snapshots_open", "Open Pebble snapshots (a held Raft snapshot keeps one).", gauge, func(m *pebble.Metrics) float64 { return float64(m.Snapshots.Count) })
	add("table_iterators", "Open sstable iterators.", gauge, func(m *pebble.Metrics) float64 { return float64(m.TableIters) })
	return out
}()

var (
	pebbleLevelTables = prometheus.NewDesc("cxkv_pebble_level_tables", "Sstables in each LSM level.", []string{"level"}, nil)
	pebbleLevelBytes  = prometheus.NewDesc("cxkv_pebble_level_bytes", "Bytes of sstables in each LSM level.", []string{"level"}, nil)
	pebbleL0Sublevels = prometheus.NewDesc("cxkv_pebble_l0_sublevels", "Sublevels in L0 (a growing count means compactions fall behind).", nil, nil)
)

func (c *pebbleCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, p := range pebbleMetrics {
		ch <- p.desc
	}
	ch <- pebbleLevelTables
	ch <- pebbleLevelBytes
	ch <- pebbleL0Sublevels
}

func (c *pebbleCollector) Collect(ch chan<- prometheus.Metric) {
	c.with(func(s *Store) {
		m := s.db.Metrics()
		for _, p := range pebbleMetrics {
			ch <- prometheus.MustNewConstMetric(p.desc, p.kind, p.value(m))
		}
		for i, l := range m.Levels {
			lv := strconv.Itoa(i)
			ch <- prometheus.MustNewConstMetric(pebbleLevelTables, prometheus.GaugeValue, float64(l.TablesCount), lv)
			ch <- prometheus.MustNewConstMetric(pebbleLevelBytes, prometheus.GaugeValue, float64(l.TablesSize), lv)
		}
		ch <- prometheus.MustNewConstMetric(pebbleL0Sublevels, prometheus.GaugeValue, float64(m.Levels[0].Sublevels))
	})
}
