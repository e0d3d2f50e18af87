package cxkvpb

import (
	"fmt"
	"strings"
)

// Name is the one naming rule for event types, which the SDK and the CLI
// print: the enum value's name in lower case ("put", "delete", "expire"),
// and "unknown(N)" for a value this build does not know, so an event from a
// newer server is shown as what it is rather than as another type.
func (x Event_Type) Name() string {
	if s, ok := Event_Type_name[int32(x)]; ok {
		return strings.ToLower(s)
	}
	return fmt.Sprintf("unknown(%d)", int32(x))
}
