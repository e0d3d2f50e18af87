package client

// SetListPageSize makes List fetch n records a page, so tests can cross
// page boundaries with few keys. It returns the function that restores it.
func SetListPageSize(n int) (restore func()) {
	old := listPageSize
	listPageSize = n
	return func() { listPageSize = old }
}
