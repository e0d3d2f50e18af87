package raftnode_test

import (
	"bytes"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/kv"
	"github.com/cxkv/cxkv/raftnode"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Every member bootstraps the same first entries on its own: one ConfChange
// adding each member, in member id order. Entries 1..n must be byte for byte
// the same on every member (they are committed by fiat, never compared by
// raft), so they cannot depend on map iteration.
func TestBootstrapLogIsIdenticalOnEveryMember(t *testing.T) {
	const members = 7
	dir := t.TempDir()
	peers := map[uint64]string{}
	lis := map[uint64]net.Listener{}
	for id := uint64(1); id <= members; id++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		lis[id], peers[id] = l, l.Addr().String()
	}
	// The other members need not run: each writes its bootstrap entries
	// before it talks to anyone.
	var want [][]byte
	for id := uint64(1); id <= members; id++ {
		ctx, err := proto.MarshalOptions{Deterministic: true}.Marshal(&cxkvpb.Member{Id: id, Addr: peers[id]})
		if err != nil {
			t.Fatal(err)
		}
		cc, err := proto.Marshal(&pb.ConfChange{Type: pb.ConfChangeAddNode.Enum(), NodeId: proto.Uint64(id), Context: ctx})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, cc)
	}
	// No member listens until it starts, so a starting member does not
	// wait for answers to its question whether it ran before: it starts
	// on the port its listener held.
	for _, l := range lis {
		l.Close()
	}
	for _, id := range []uint64{1, 4, 7} {
		data := filepath.Join(dir, fmt.Sprint(id))
		n, err := raftnode.Start(raftnode.Config{
			ID: id, Addr: peers[id], DataDir: data, Peers: peers,
			TickInterval: 10 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(5 * time.Second); n.Status().LastIndex < members; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("member %d: bootstrap entries not persisted: %+v", id, n.Status())
			}
		}
		if err := n.Stop(); err != nil {
			t.Fatal(err)
		}
		store, err := kv.Open(data, kv.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ents, err := store.RaftLog().Entries(1, members+1, 1<<30)
		store.Close()
		if err != nil || len(ents) != members {
			t.Fatalf("member %d: entries 1..%d: %d entries, %v", id, members, len(ents), err)
		}
		for i, e := range ents {
			if e.GetType() != pb.EntryConfChange || !bytes.Equal(e.GetData(), want[i]) {
				var got pb.ConfChange
				proto.Unmarshal(e.GetData(), &got)
				t.Fatalf("member %d: entry %d adds member %d; every member must add member %d there", id, i+1, got.GetNodeId(), i+1)
			}
		}
	}
}
