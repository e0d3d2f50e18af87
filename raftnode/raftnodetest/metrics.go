package raftnodetest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metrics is one scrape of a member's /metrics, parsed.
type Metrics map[string]*dto.MetricFamily

// Scrape fetches /metrics from h (a member's Handler) over HTTP, the way
// Prometheus does, and parses the text format.
func Scrape(t testing.TB, h http.Handler) Metrics {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape: %s: %s", resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("scrape: parse: %v", err)
	}
	return Metrics(fams)
}

// Value is the value of the series name{labels...} (labels as "k=v"): a
// counter's or gauge's value, a histogram's sample count. It fails the test
// if no such series exists.
func (m Metrics) Value(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	v, ok := m.Lookup(name, labels...)
	if !ok {
		t.Fatalf("no series %s{%s} in the scrape (have: %s)", name, strings.Join(labels, ","), m.names())
	}
	return v
}

// Lookup is Value without failing: ok is false if the series is absent.
func (m Metrics) Lookup(name string, labels ...string) (float64, bool) {
	f := m[name]
	if f == nil {
		return 0, false
	}
next:
	for _, s := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range s.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for _, kv := range labels {
			k, v, _ := strings.Cut(kv, "=")
			if have[k] != v {
				continue next
			}
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			return s.GetCounter().GetValue(), true
		case dto.MetricType_GAUGE:
			return s.GetGauge().GetValue(), true
		case dto.MetricType_HISTOGRAM:
			return float64(s.GetHistogram().GetSampleCount()), true
		case dto.MetricType_UNTYPED:
			return s.GetUntyped().GetValue(), true
		}
		panic(fmt.Sprintf("metric %s has type %v", name, f.GetType()))
	}
	return 0, false
}

func (m Metrics) names() string {
	var out []string
	for n := range m {
		if strings.HasPrefix(n, "cxkv_") {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}
