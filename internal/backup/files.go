package backup

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Suffixes of the files beside a dump.
const (
	// partialSuffix marks a file still being written: only a rename makes
	// it final, so a crash or a cancellation leaves nothing that looks
	// complete.
	partialSuffix = ".partial"
	// manifestSuffix marks the dump's checksum, in sha256sum's format
	// (`sha256sum -c` checks it from the backup directory).
	manifestSuffix = ".sha256"
)

// fileSum returns the hex SHA-256 and size of a file.
func fileSum(path string) (sum string, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	size, err = io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("reading %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), size, nil
}

// writeSynced writes a whole file and flushes it to disk.
func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	return closeSynced(f, err)
}

// closeSynced flushes and closes f, keeping the first error.
func closeSynced(f *os.File, err error) error {
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", f.Name(), err)
	}
	return nil
}

// syncFile flushes a file another process wrote.
func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	return closeSynced(f, nil)
}

// renameSynced renames and flushes the directory, so the rename itself
// survives a power loss.
func renameSynced(from, to string) error {
	if err := os.Rename(from, to); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(to))
	if err != nil {
		return err
	}
	return closeSynced(d, nil)
}

// manifestLine is one sha256sum line naming the final file.
func manifestLine(sum, final string) string {
	return sum + "  " + filepath.Base(final) + "\n"
}

// readManifest returns the hash recorded for final, or "" when the
// manifest is missing or does not describe final.
func readManifest(final string) (string, error) {
	b, err := os.ReadFile(final + manifestSuffix)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	sum, name, ok := strings.Cut(strings.TrimSuffix(string(b), "\n"), "  ")
	if !ok || name != filepath.Base(final) || len(sum) != sha256.Size*2 {
		return "", nil
	}
	return sum, nil
}

// completed returns the dump a previous attempt finished at final, or
// nil when there is none. A final file whose manifest is missing or
// does not match (corrupted, truncated) is removed with its manifest, to
// be redone; a leftover .partial is removed too.
func completed(final string) (*Artifact, error) {
	if err := removeIfExists(final + partialSuffix); err != nil {
		return nil, err
	}
	want, err := readManifest(final)
	if err != nil {
		return nil, err
	}
	if want != "" {
		sum, size, err := fileSum(final)
		if err == nil && sum == want {
			return &Artifact{Path: final, Bytes: size, SHA256: sum, Reused: true}, nil
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	if err := removeIfExists(final); err != nil {
		return nil, err
	}
	return nil, removeIfExists(final + manifestSuffix)
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing the stale %s: %w", path, err)
	}
	return nil
}

// configCopy is one config file to copy into the backup.
type configCopy struct {
	src, dst string
	// sum and size are the source's, measured when planning.
	sum  string
	size int64
	// reused: dst already holds exactly the source.
	reused bool
}

// configNames gives each file a name in the config directory: its base
// name, or base-2.ext, base-3.ext… for later files of the same base name,
// so the same list always maps to the same names. A path listed twice is
// copied once.
func configNames(files []string) (srcs, names []string) {
	seenPath, used := map[string]bool{}, map[string]bool{}
	for _, f := range files {
		if seenPath[filepath.Clean(f)] {
			continue
		}
		seenPath[filepath.Clean(f)] = true
		base := filepath.Base(f)
		ext := filepath.Ext(base)
		name := base
		for n := 2; used[name]; n++ {
			name = fmt.Sprintf("%s-%d%s", strings.TrimSuffix(base, ext), n, ext)
		}
		used[name] = true
		srcs, names = append(srcs, f), append(names, name)
	}
	return srcs, names
}

// planCopies measures each config file and finds the copies a previous
// attempt already made.
func planCopies(files []string, dir string) ([]configCopy, error) {
	srcs, names := configNames(files)
	copies := make([]configCopy, len(srcs))
	for i, src := range srcs {
		c := configCopy{src: src, dst: filepath.Join(dir, names[i])}
		var err error
		if c.sum, c.size, err = fileSum(src); err != nil {
			return nil, fmt.Errorf("reading Synapse config %s to back it up: %w", src, err)
		}
		if have, _, err := fileSum(c.dst); err == nil && have == c.sum {
			c.reused = true
		}
		copies[i] = c
	}
	return copies, nil
}

// copyConfig copies src through a .partial file renamed into place, and
// returns what was copied (the source may have changed since planning).
func copyConfig(c configCopy) (Artifact, error) {
	a := Artifact{Label: "config:" + filepath.Base(c.dst), Path: c.dst, Source: c.src}
	if c.reused {
		a.Bytes, a.SHA256, a.Reused = c.size, c.sum, true
		return a, nil
	}
	in, err := os.Open(c.src)
	if err != nil {
		return a, fmt.Errorf("backing up Synapse config %s: %w", c.src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(c.dst+partialSuffix, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return a, fmt.Errorf("backing up Synapse config %s: %w", c.src, err)
	}
	h := sha256.New()
	a.Bytes, err = io.Copy(io.MultiWriter(out, h), in)
	if err = closeSynced(out, err); err != nil {
		return a, err
	}
	a.SHA256 = hex.EncodeToString(h.Sum(nil))
	return a, renameSynced(c.dst+partialSuffix, c.dst)
}
