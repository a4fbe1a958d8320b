// Package secret holds values that must never be printed: access and
// refresh tokens, password hashes and configuration secrets. Every way Go
// formats a value (fmt verbs, JSON, text marshalling) prints a fixed
// placeholder instead of the content, so a secret that slips into a log
// line, an error or a Temporal payload by accident reveals nothing.
package secret

import "fmt"

// Redacted is what every formatting of a String prints.
const Redacted = "[redacted]"

// String is a secret text value. Use Reveal to get the content where it
// must be used (writing it to the MAS database, comparing peppers).
type String string

// Reveal returns the secret content. Call it only where the value is
// written to its destination or compared, never to print it.
func (s String) Reveal() string { return string(s) }

// IsEmpty reports whether the secret has no content.
func (s String) IsEmpty() bool { return s == "" }

// String implements fmt.Stringer with a placeholder.
func (s String) String() string { return Redacted }

// GoString implements fmt.GoStringer with a placeholder (%#v).
func (s String) GoString() string { return Redacted }

// Format makes every fmt verb (%s, %v, %q, %x, …) print the placeholder.
func (s String) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(Redacted)) }

// MarshalText keeps secrets out of JSON, YAML and Temporal payloads.
func (s String) MarshalText() ([]byte, error) { return []byte(Redacted), nil }
