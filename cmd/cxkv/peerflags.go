package main

import (
	"fmt"

	"github.com/cxkv/cxkv/raftnode"
	"github.com/spf13/pflag"
)

// peerAddrFlags give peers a port of their own: the Raft service is then
// served only there, and the client port serves clients only. Without
// them, peers share the client port (the simple case of one port). They
// mirror the client flags: --peer-addr for listen and advertise alike,
// --peer-listen-addr and --peer-advertise-addr where the two differ.
type peerAddrFlags struct {
	addr, listen, advertise string
}

func (p *peerAddrFlags) register(f *pflag.FlagSet) {
	f.StringVar(&p.addr, "peer-addr", "", "host:port this member serves its peers (the Raft service) on, listen and advertise alike (default: peers share --addr)")
	f.StringVar(&p.listen, "peer-listen-addr", "", "host:port to bind the peer port to, if not the advertised peer address (e.g. 0.0.0.0:7101)")
	f.StringVar(&p.advertise, "peer-advertise-addr", "", "host:port the other members reach this member's peer port at: its entry in --cluster (default --peer-addr)")
}

// resolve returns where to listen for peers and the address peers dial,
// both empty when peers share the client port.
func (p *peerAddrFlags) resolve() (listen, advertise string, err error) {
	advertise = p.advertise
	switch {
	case advertise == "":
		advertise = p.addr
	case p.addr != "" && p.addr != advertise:
		return "", "", fmt.Errorf("--peer-addr %s and --peer-advertise-addr %s disagree: give one", p.addr, advertise)
	}
	if advertise == "" {
		if p.listen != "" {
			return "", "", fmt.Errorf("--peer-listen-addr %s needs the address peers dial: give --peer-advertise-addr (or --peer-addr)", p.listen)
		}
		return "", "", nil
	}
	if err := raftnode.CheckAddr(advertise); err != nil {
		return "", "", fmt.Errorf("peer address %q: %w", advertise, err)
	}
	listen = p.listen
	if listen == "" {
		listen = advertise
	} else if err := checkListenAddr(listen); err != nil {
		return "", "", fmt.Errorf("--peer-listen-addr %q: %w", listen, err)
	}
	return listen, advertise, nil
}
