// Package greet builds the service's greeting.
package greet

// Greet returns the greeting for name.
func Greet(name string) string { return "hello " + name + " from go" }
