package bench

import (
	"testing"
	"unsafe"
)

// The ioctls take the kernel's structs by size: a wrong layout is EINVAL
// at best, and at worst a reply to the wrong notification.
func TestSeccompStructSizes(t *testing.T) {
	if n := unsafe.Sizeof(seccompNotif{}); n != 80 {
		t.Errorf("seccompNotif is %d bytes, struct seccomp_notif 80", n)
	}
	if n := unsafe.Sizeof(seccompNotifResp{}); n != 24 {
		t.Errorf("seccompNotifResp is %d bytes, struct seccomp_notif_resp 24", n)
	}
}
