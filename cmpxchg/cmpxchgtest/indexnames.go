package cmpxchgtest

import "strconv"

// IndexNames names log indexes @1, @2, ... in order of first appearance, so
// that expected output does not depend on how many entries elections and
// configuration added to the log. The zero value is ready to use.
type IndexNames struct {
	byIndex   map[uint64]int
	byOrdinal map[int]uint64
}

// Name returns i's name: "0" for 0, else @N.
func (x *IndexNames) Name(i uint64) string {
	if i == 0 {
		return "0"
	}
	if x.byIndex == nil {
		x.byIndex, x.byOrdinal = map[uint64]int{}, map[int]uint64{}
	}
	n, ok := x.byIndex[i]
	if !ok {
		n = len(x.byIndex) + 1
		x.byIndex[i] = n
		x.byOrdinal[n] = i
	}
	return "@" + strconv.Itoa(n)
}

// Index returns the index @n names. An @n not seen yet stands for an index
// no key has, so a script can ask for a compare that must fail.
func (x *IndexNames) Index(n int) uint64 {
	if i, ok := x.byOrdinal[n]; ok {
		return i
	}
	return 1<<50 + uint64(n)
}
