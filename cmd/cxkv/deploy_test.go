package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/cxkv/cxkv/raftnode/raftnodetest"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

const deployDir = "../../deploy"

// yamlDocs parses every document of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var docs []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, d)
	}
	if len(docs) == 0 {
		t.Fatalf("%s: no YAML document", path)
	}
	return docs
}

// dig follows keys (map keys, or list indexes as ints) into parsed YAML.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

var envVarRE = regexp.MustCompile(`\bCXKV_[A-Z_]+\b`)

// Every CXKV_* variable a deployment file sets must be a server flag's (or
// the client's CXKV_ENDPOINTS): a typo would silently leave the default.
func checkEnvNames(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{"CXKV_ENDPOINTS": true}
	newServerCmd(env{getenv: os.Getenv}).Flags().VisitAll(func(f *pflag.Flag) { known[envName(f.Name)] = true })
	for _, v := range envVarRE.FindAllString(string(b), -1) {
		if !known[v] {
			t.Errorf("%s sets %s, which names no server flag", path, v)
		}
	}
}

func TestDeployFilesParse(t *testing.T) {
	compose := yamlDocs(t, filepath.Join(deployDir, "compose.yaml"))[0]
	for _, name := range []string{"cxkv1", "cxkv2", "cxkv3", "prometheus"} {
		if dig(compose, "services", name) == nil {
			t.Errorf("compose.yaml has no service %s", name)
		}
	}
	for _, name := range []string{"cxkv1", "cxkv2", "cxkv3"} {
		adv, _ := dig(compose, "services", name, "environment", "CXKV_PEER_ADVERTISE_ADDR").(string)
		cluster, _ := dig(compose, "services", name, "environment", "CXKV_CLUSTER").(string)
		id, _ := dig(compose, "services", name, "environment", "CXKV_ID").(string)
		if adv == "" || !strings.Contains(cluster, id+"="+adv) {
			t.Errorf("compose.yaml %s: advertises its peer port as %q as member %q, not its entry in CXKV_CLUSTER %q", name, adv, id, cluster)
		}
	}
	prom := yamlDocs(t, filepath.Join(deployDir, "prometheus", "prometheus.yml"))[0]
	targets, _ := dig(prom, "scrape_configs", 0, "static_configs", 0, "targets").([]any)
	if len(targets) != 3 {
		t.Errorf("prometheus.yml scrapes %v, want the 3 members", targets)
	}
	yamlDocs(t, filepath.Join(deployDir, "prometheus", "alerts.yml"))

	kinds := map[string]map[string]any{}
	for _, d := range yamlDocs(t, filepath.Join(deployDir, "kubernetes", "cxkv.yaml")) {
		kind, _ := d["kind"].(string)
		name, _ := dig(d, "metadata", "name").(string)
		kinds[kind+"/"+name] = d
	}
	sts := kinds["StatefulSet/cxkv"]
	if sts == nil || dig(sts, "spec", "replicas") != 3 || dig(sts, "spec", "serviceName") != "cxkv-peer" {
		t.Errorf("kubernetes: want a StatefulSet cxkv of 3 replicas on the headless service cxkv-peer, got %v", dig(sts, "spec"))
	}
	if p := dig(sts, "spec", "template", "spec", "containers", 0, "readinessProbe", "httpGet", "path"); p != "/readyz" {
		t.Errorf("kubernetes: readiness probe on %v, want /readyz", p)
	}
	if h := kinds["Service/cxkv-peer"]; dig(h, "spec", "clusterIP") != "None" {
		t.Error("kubernetes: the peer Service is not headless")
	}
	if pdb := kinds["PodDisruptionBudget/cxkv"]; dig(pdb, "spec", "minAvailable") != 2 {
		t.Error("kubernetes: want a PodDisruptionBudget keeping 2 of 3 members")
	}
	for _, f := range []string{"compose.yaml", "kubernetes/cxkv.yaml", "systemd/cxkv.env", "systemd/cxkv.service"} {
		checkEnvNames(t, filepath.Join(deployDir, f))
	}
	checkEnvNames(t, "../../Dockerfile")
	if unit, err := os.ReadFile(filepath.Join(deployDir, "systemd", "cxkv.service")); err != nil || !bytes.Contains(unit, []byte("ExecStart=/usr/local/bin/cxkv server")) {
		t.Errorf("systemd unit missing or without ExecStart (%v)", err)
	}
}

// promNameRE finds the metric names a PromQL expression uses.
var promNameRE = regexp.MustCompile(`\b(cxkv_[a-z0-9_]+|go_[a-z0-9_]+|process_[a-z0-9_]+)\b`)

func queriedMetrics(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	b, err := os.ReadFile(filepath.Join(deployDir, "grafana", "cxkv-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, n := range promNameRE.FindAllString(tg.Expr, -1) {
				out[n] = "dashboard panel " + p.Title
			}
		}
	}
	for _, d := range yamlDocs(t, filepath.Join(deployDir, "prometheus", "alerts.yml")) {
		rules, _ := dig(d, "groups", 0, "rules").([]any)
		for _, r := range rules {
			expr, _ := dig(r, "expr").(string)
			for _, n := range promNameRE.FindAllString(expr, -1) {
				out[n] = "alert " + dig(r, "alert").(string)
			}
		}
	}
	if len(out) < 20 {
		t.Fatalf("the dashboard and alerts query only %d metrics", len(out))
	}
	return out
}

// Every metric the dashboard and the alerts query exists in a live
// member's /metrics.
func TestDashboardMetricsExist(t *testing.T) {
	queried := queriedMetrics(t)
	c := raftnodetest.Start(t, 3)
	m := raftnodetest.Scrape(t, c.Members[c.WaitLeader()].Handler())
	var missing []string
	for name, where := range queried {
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suffix); ok && m[b] != nil {
				base = b
			}
		}
		if m[base] == nil {
			missing = append(missing, name+" ("+where+")")
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("queried but not exported:\n%s", strings.Join(missing, "\n"))
	}
}

// The Dockerfile builds, where a Docker daemon answers.
func TestDockerBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds an image")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("no docker client")
	}
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		t.Skipf("no Docker daemon answers (docker info: %v: %s)", err, firstLine(out))
	}
	build := exec.Command("docker", "build", "-t", "cxkv:test", "--build-arg", "VERSION=test", "../..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	out, err := exec.Command("docker", "run", "--rm", "cxkv:test", "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "cxkv test\n") {
		t.Fatalf("docker run cxkv:test version: %v: %s", err, out)
	}
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return s
}
