package cmpxchg_test

import (
	"testing"

	"github.com/cxkv/cxkv/cmpxchg/cmpxchgtest"
)

func TestScriptsOnStateMachine(t *testing.T) {
	cmpxchgtest.RunScripts(t, "../testdata/cmpxchg", cmpxchgtest.NewMachineTarget)
	cmpxchgtest.RunScripts(t, "../testdata/cmpxchg/machine", cmpxchgtest.NewMachineTarget)
}
