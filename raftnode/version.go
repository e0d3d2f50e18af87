package raftnode

import (
	"runtime/debug"
	"strings"
)

// version and revision are stamped into release builds by the linker
// (make release):
//
//	go build -ldflags "-X github.com/cxkv/cxkv/raftnode.version=v1.2.3 -X github.com/cxkv/cxkv/raftnode.revision=<commit>"
//
// Without them they come from the module's build information: a tagged
// module version when built with `go install ...@vX`, the VCS stamp Go
// records when it builds in a git work tree, else "(devel)". The stamp
// wins because Go's own VCS stamp is off under -buildvcs=false and in
// some work trees, and a release must say what it is either way.
var version, revision string

// BuildInfo says which build of cxkv is running. The member reports it in
// Status and in the cxkv_build_info metric; `cxkv version` prints it.
type BuildInfo struct {
	Version   string `json:"version"`
	Revision  string `json:"revision,omitempty"` // VCS commit, empty if the build had no VCS stamp
	Modified  bool   `json:"modified"`           // built from a work tree with uncommitted changes
	Time      string `json:"time,omitempty"`     // commit time (RFC 3339)
	GoVersion string `json:"go_version"`
}

// Build reads the running binary's build information.
func Build() BuildInfo {
	b := BuildInfo{Version: version, Revision: revision}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		if b.Version == "" {
			b.Version = "unknown"
		}
		return b
	}
	b.GoVersion = info.GoVersion
	if b.Version == "" {
		b.Version = info.Main.Version
	}
	if b.Version == "" {
		b.Version = "(devel)" // a test binary has no main module version
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			if b.Revision == "" {
				b.Revision = s.Value
			}
		case "vcs.modified":
			b.Modified = b.Modified || s.Value == "true"
		case "vcs.time":
			b.Time = s.Value
		}
	}
	return b
}

// String is the one-line form: "v1.2.3 (rev 0123abcd, modified, go1.26.8)".
func (b BuildInfo) String() string {
	var parts []string
	if b.Revision != "" {
		rev := b.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		parts = append(parts, "rev "+rev)
	}
	if b.Modified {
		parts = append(parts, "modified")
	}
	if b.GoVersion != "" {
		parts = append(parts, b.GoVersion)
	}
	if len(parts) == 0 {
		return b.Version
	}
	return b.Version + " (" + strings.Join(parts, ", ") + ")"
}
