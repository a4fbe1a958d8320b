package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// dump returns the job's completed dump, made now unless a previous
// attempt made it: pg_dump into the .partial file, flushed, read back by
// pg_restore --list, its checksum written beside it, and only then
// renamed to the final name.
func (o Options) dump(ctx context.Context, j dumpJob) (Artifact, error) {
	if j.done != nil {
		a := *j.done
		a.Label = j.label
		return a, nil
	}
	partial := j.final + partialSuffix
	if err := o.runPgDump(ctx, j, partial); err != nil {
		return Artifact{}, fmt.Errorf("dumping the %s database: %w", j.label, err)
	}
	if err := syncFile(partial); err != nil {
		return Artifact{}, err
	}
	verify := exec.CommandContext(ctx, o.PgRestore, "--list", partial)
	if err := o.run(ctx, verify, "pg_restore --list", func(s string) string { return s }); err != nil {
		return Artifact{}, fmt.Errorf("verifying the %s database's dump %s: %w", j.label, partial, err)
	}
	sum, size, err := fileSum(partial)
	if err != nil {
		return Artifact{}, err
	}
	if err := writeSynced(j.final+manifestSuffix, []byte(manifestLine(sum, j.final))); err != nil {
		return Artifact{}, err
	}
	if err := renameSynced(partial, j.final); err != nil {
		return Artifact{}, fmt.Errorf("completing the %s database's dump: %w", j.label, err)
	}
	return Artifact{Label: j.label, Path: j.final, Bytes: size, SHA256: sum}, nil
}

// runPgDump runs pg_dump with the connection in private files (see
// conn.credentials), reporting progress.
func (o Options) runPgDump(ctx context.Context, j dumpJob, partial string) error {
	env, remove, err := j.conn.credentials()
	if err != nil {
		return err
	}
	defer remove()
	// pg_dump truncates the file it is given and keeps its mode: created
	// here, only the owner can read a dump holding password hashes and
	// tokens.
	if err := writeSynced(partial, nil); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, o.PgDump, "--format=custom", "--no-password", "--file="+partial)
	cmd.Env = env
	stop := o.watch(j.label, partial)
	defer stop()
	return o.run(ctx, cmd, "pg_dump", j.conn.scrub)
}

// watch reports the growing file's size every ProgressEvery until stop
// is called, then once more with its final size.
func (o Options) watch(label, path string) (stop func()) {
	report := func() {
		if st, err := os.Stat(path); err == nil {
			o.Progress(Progress{Label: label, Bytes: st.Size()})
		}
	}
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(o.ProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				report()
			}
		}
	}()
	return func() { close(done); <-finished; report() }
}

// tailLines is how much of a failed tool's stderr an error quotes.
const tailLines = 20

// run runs a tool; a failure quotes the end of its stderr, scrubbed, with
// the fix when the complaint is a known one.
func (o Options) run(ctx context.Context, cmd *exec.Cmd, name string, scrub func(string) string) error {
	var stderr tail
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	// A killed tool's children could hold stderr open: stop waiting.
	cmd.WaitDelay = 5 * time.Second
	if o.inspect != nil {
		o.inspect(cmd)
	}
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("%s stopped: %w", name, context.Cause(ctx))
	case !errors.As(err, &exit):
		return marked{fmt.Errorf("starting %s (%s): %w", name, cmd.Path, err), ErrTool}
	}
	out := scrub(stderr.last(tailLines))
	msg := fmt.Sprintf("%s failed (%s)", name, exit.ProcessState)
	if out != "" {
		msg += ", ending:\n\t" + strings.ReplaceAll(out, "\n", "\n\t")
	}
	f, known := fixFor(out)
	if !known {
		return errors.New(msg)
	}
	msg += "\n" + f.fix
	if f.tool {
		return marked{errors.New(msg), ErrTool}
	}
	return errors.New(msg)
}

// fix is what the operator does about a tool's recognisable complaint.
type fix struct {
	match string
	fix   string
	// tool marks a setup problem (ErrTool).
	tool bool
}

// fixes are tried in order against a failed tool's stderr.
var fixes = []fix{
	{"server version mismatch", "fix: install a pg_dump of at least the server's major version (the lines above " +
		"name both versions) and set backup.pg_dump to it", true},
	{"unsupported version", "fix: pg_restore is older than the pg_dump that wrote the dump: set backup.pg_restore " +
		"to the pg_restore of the same PostgreSQL release as backup.pg_dump", true},
	{"password authentication failed", "fix: the server refused the password of the database configuration: correct it there", false},
	{"no password supplied", "fix: the server wants a password and the database configuration gives none: add it there", false},
	{"permission denied for", "fix: the configured role cannot read everything in the database: back up with a role " +
		"that owns it (the one Synapse or MAS connects as normally does)", false},
	{"no space left on device", "fix: backup.dir filled up: free space there or set backup.dir to a larger filesystem", false},
	{"connection refused", "fix: check the database host and port in the configuration, and that PostgreSQL is running", false},
	{"could not translate host name", "fix: the database host in the configuration does not resolve from this worker", false},
}

func fixFor(stderr string) (fix, bool) {
	lower := strings.ToLower(stderr)
	for _, f := range fixes {
		if strings.Contains(lower, f.match) {
			return f, true
		}
	}
	return fix{}, false
}

// tail keeps the end of a tool's stderr: only the end explains a failure,
// and pg_dump --verbose writes a lot.
type tail struct{ b []byte }

const tailBytes = 16 << 10

func (t *tail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > tailBytes {
		t.b = t.b[len(t.b)-tailBytes:]
	}
	return len(p), nil
}

// last returns the last n lines.
func (t *tail) last(n int) string {
	s := strings.TrimRight(string(t.b), "\n")
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
