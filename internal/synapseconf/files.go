package synapseconf

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/masflow/masflow/internal/config"
)

// Restore puts back every config file Rewrite changed, byte for byte from
// its <file>.pre-mas copy, and removes the copies. It returns the files
// restored; none when nothing was rewritten, so running it again is safe.
// paths are the same as given to Rewrite.
func Restore(paths []string) ([]string, error) {
	files, err := config.ExpandPaths(paths)
	if err != nil {
		return nil, err
	}
	type pending struct {
		path string
		orig []byte
		info fs.FileInfo
	}
	var todo []pending
	for _, f := range unique(files) {
		orig, err := os.ReadFile(f + backupSuffix)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s%s, the original of %s: %w", f, backupSuffix, f, err)
		}
		info, err := os.Stat(f + backupSuffix)
		if err == nil {
			err = writable(f)
		}
		if err == nil {
			err = unchangedSinceRewrite(f, orig)
		}
		if err != nil {
			return nil, err
		}
		todo = append(todo, pending{f, orig, info})
	}
	var restored []string
	for _, t := range todo {
		if err := putBack(t.path, t.orig, t.info); err != nil {
			return restored, err
		}
		restored = append(restored, t.path)
	}
	return restored, nil
}

// putBack writes a file's original text, checks it reads back identical
// and only then removes the copy.
func putBack(path string, orig []byte, info fs.FileInfo) error {
	if cur, err := os.ReadFile(path); err != nil || !bytes.Equal(cur, orig) {
		if err := writeAtomic(path, orig, info); err != nil {
			return err
		}
		if back, err := os.ReadFile(path); err != nil || !bytes.Equal(back, orig) {
			return fmt.Errorf("%s does not read back as %s%s after restoring it; the copy is kept: copy it back by hand",
				path, path, backupSuffix)
		}
	}
	_ = os.Remove(path + rewriteSuffix)
	if err := os.Remove(path + backupSuffix); err != nil {
		return fmt.Errorf("%s is restored but its copy could not be removed: %w; remove %s%s by hand", path, err, path, backupSuffix)
	}
	return nil
}

// rewriteSuffix names the file holding the SHA-256 of the text Rewrite
// wrote: how Restore and a later Rewrite tell masflow's rewrite from a
// file put back or edited since.
const rewriteSuffix = ".pre-mas.sha256"

func digest(text []byte) string {
	sum := sha256.Sum256(text)
	return hex.EncodeToString(sum[:])
}

// rewrittenBy reports whether path's recorded rewrite is text; known is
// false when no rewrite was recorded (a copy made by hand, not by masflow).
func rewrittenBy(path string, text []byte) (ours, known bool) {
	b, err := os.ReadFile(path + rewriteSuffix)
	if err != nil {
		return false, false
	}
	return strings.TrimSpace(string(b)) == digest(text), true
}

// unchangedSinceRewrite refuses to restore a file that is neither its
// original nor masflow's rewrite: someone edited it since, and putting
// the copy back would lose that.
func unchangedSinceRewrite(path string, orig []byte) error {
	cur, err := os.ReadFile(path)
	if err != nil || bytes.Equal(cur, orig) {
		return nil
	}
	if ours, known := rewrittenBy(path, cur); known && !ours {
		return fmt.Errorf("%s changed since masflow rewrote it: compare it with %s%s and put back by hand what it should be",
			path, path, backupSuffix)
	}
	return nil
}

// staged is a file ready to be replaced: its new text in tmp, its
// original in the backup (made now, or by an earlier run).
type staged struct {
	path, tmp string
	newBackup bool
}

// commit writes the rewritten files. Every file is staged first (backup
// made, new text written to a temporary file beside it and synced), then
// all are renamed into place: a failure while staging leaves every file
// as it was.
func commit(out []rewritten) error {
	var ready []staged
	for _, r := range out {
		s, err := stage(r)
		if err != nil {
			for _, s := range ready {
				s.discard()
			}
			return err
		}
		ready = append(ready, s)
	}
	for i, s := range ready {
		if err := os.Rename(s.tmp, s.path); err != nil {
			for _, rest := range ready[i:] {
				_ = os.Remove(rest.tmp)
			}
			return fmt.Errorf("replacing %s: %w; the files before it were rewritten (originals in *%s): "+
				"run the restore, or fix the cause and rewrite again", s.path, err, backupSuffix)
		}
		syncDir(s.path)
	}
	return nil
}

// stage checks a file can be replaced, copies its original to
// <file>.pre-mas unless an earlier run did (that copy is the true
// original), and writes its new text beside it.
func stage(r rewritten) (staged, error) {
	s := staged{path: r.path}
	if err := writable(r.path); err != nil {
		return s, err
	}
	info, err := os.Stat(r.path)
	if err != nil {
		return s, fmt.Errorf("reading Synapse config %s: %w", r.path, err)
	}
	if cur, err := os.ReadFile(r.path); err != nil || !bytes.Equal(cur, r.old) {
		return s, fmt.Errorf("%s changed while it was being rewritten: run again", r.path)
	}
	backup := r.path + backupSuffix
	_, err = os.Lstat(backup)
	missing := errors.Is(err, fs.ErrNotExist)
	if err != nil && !missing {
		return s, fmt.Errorf("cannot make the backup copy %s (%v): fix the cause, or apply docs/reconfigure.md by hand", backup, err)
	}
	// A copy is the true original while the file is masflow's rewrite; a
	// copy left beside a file put back or edited since is stale.
	if ours, known := rewrittenBy(r.path, r.old); missing || (known && !ours) {
		if err := writeAtomic(backup, r.old, info); err != nil {
			return s, err
		}
		s.newBackup = missing
	}
	if err := writeAtomic(r.path+rewriteSuffix, []byte(digest(r.new)+"\n"), info); err != nil {
		s.discard()
		return s, err
	}
	if s.tmp, err = writeTemp(r.path, r.new, info); err != nil {
		s.discard()
	}
	return s, err
}

// discard undoes a stage: the temporary file, and the backup if this run
// made it (the file itself is unchanged, so a later run makes it again).
func (s staged) discard() {
	if s.tmp != "" {
		_ = os.Remove(s.tmp)
	}
	if s.newBackup {
		_ = os.Remove(s.path + backupSuffix)
	}
}

// writable checks the file can be opened for writing (it is not
// truncated) so that a read-only config is reported, not replaced. A file
// without any write permission bit is refused even for root: the operator
// marked it read-only on purpose.
func writable(path string) error {
	if info, err := os.Stat(path); err == nil && info.Mode().Perm()&0o222 == 0 {
		return fmt.Errorf("%s is not writable (mode %04o): make it writable for the rewrite, "+
			"or apply docs/reconfigure.md by hand", path, info.Mode().Perm())
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("%s is not writable (%v): run masflow as the user that owns Synapse's config, "+
			"or apply docs/reconfigure.md by hand", path, err)
	}
	return f.Close()
}

// writeAtomic replaces path with data: temporary file, sync, rename.
func writeAtomic(path string, data []byte, like fs.FileInfo) error {
	tmp, err := writeTemp(path, data, like)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	syncDir(path)
	return nil
}

// writeTemp writes data to a synced temporary file beside path, with the
// mode and owner of like. Its name does not end in .yaml, so Synapse
// never reads it from a config directory.
func writeTemp(path string, data []byte, like fs.FileInfo) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.masflow-tmp")
	if err != nil {
		return "", fmt.Errorf("cannot write beside %s (%v): give masflow write access to %s, "+
			"or apply docs/reconfigure.md by hand", path, err, filepath.Dir(path))
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(like.Mode().Perm())
	}
	if err == nil {
		err = keepOwner(f, like)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Name(), nil
}

// syncDir makes a rename durable; best effort, as some filesystems
// refuse to sync a directory.
func syncDir(path string) {
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// unique drops files listed twice, keeping the first listing.
func unique(files []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range files {
		abs, err := filepath.Abs(f)
		if err != nil {
			abs = f
		}
		if !seen[abs] {
			seen[abs] = true
			out = append(out, f)
		}
	}
	return out
}

// Replace writes text to an existing file the reconfigure step owns
// beside Synapse's config (the discovery document), with the same care
// as Rewrite: the original kept as <file>.pre-mas (the true original on a
// rerun), the rewrite's digest recorded, so Restore puts it back byte
// for byte. It returns false when the file already holds text.
func Replace(path string, text []byte) (bool, error) {
	old, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("reading %s: %w; it must exist (the file your web server serves)", path, err)
	}
	if bytes.Equal(old, text) {
		return false, nil
	}
	return true, commit([]rewritten{{path: path, old: old, new: text}})
}
