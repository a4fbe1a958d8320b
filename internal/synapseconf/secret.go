package synapseconf

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"

	"github.com/masflow/masflow/internal/secret"
)

// WriteSecret writes MAS's shared secret to path (the file the rewritten
// config names in secret_path) with the owner and group of Synapse's
// config file like and mode 0640, so Synapse can read it and others
// cannot. The bytes are the secret exactly, no newline added. It does
// nothing when path already holds them, and reports whether it wrote.
func WriteSecret(path string, value secret.String, like string) (bool, error) {
	if value.IsEmpty() {
		return false, fmt.Errorf("MAS's matrix.secret is empty: set it (or matrix.secret_file) in MAS's config")
	}
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, []byte(value.Reveal())) {
		return false, nil
	}
	info, err := os.Stat(like)
	if err != nil {
		return false, fmt.Errorf("reading the owner of %s: %w", like, err)
	}
	if err := writeAtomic(path, []byte(value.Reveal()), secretMode{info}); err != nil {
		return false, fmt.Errorf("writing MAS's shared secret for Synapse: %w", err)
	}
	return true, nil
}

// secretMode is a config file's info with the secret's mode.
type secretMode struct{ fs.FileInfo }

func (secretMode) Mode() fs.FileMode { return 0o640 }
