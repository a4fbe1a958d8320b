//go:build !unix

package devserver

// lockDir is a no-op where flock does not exist.
func lockDir(string) (func(), error) { return func() {}, nil }
