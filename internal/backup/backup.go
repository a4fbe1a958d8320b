// Package backup takes the backups a migration needs before the
// homeserver goes down: a custom-format dump of each database (Synapse's,
// MAS's) and a copy of each Synapse config file the rewrite will edit.
// A dump counts only once pg_restore has read it back and its checksum is
// on disk; a retry reuses what a previous attempt completed and redoes
// the rest, so the step is idempotent.
package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"time"

	"github.com/masflow/masflow/internal/secret"
)

// Database is one database to dump.
type Database struct {
	// Label names the database in file names and messages: "synapse" or
	// "mas".
	Label string
	// ConnString is how masflow itself connects to the database: the
	// configs' PoolConfig().ConnString(), libpq keyword/value settings or
	// a postgres:// URI, password included. The string rather than the
	// parsed pgconn.Config, because the parsed form turns sslmode and the
	// sslrootcert/sslcert/sslkey files into a tls.Config that cannot be
	// given back to pg_dump: the dump connects with the same libpq
	// settings (TLS verification included) as the homeserver's config.
	ConnString secret.String
}

// Options say where the backup goes and with which tools.
type Options struct {
	// Dir receives the backup (setting backup.dir); created 0700 if
	// missing.
	Dir string
	// Prefix starts every file name and is stable for a migration (e.g.
	// "masflow-example.org"), so a retry finds what an earlier attempt
	// wrote: <Dir>/<Prefix>-<Label>.dump and <Dir>/<Prefix>-config/.
	Prefix string
	// ConfigFiles are copied verbatim into <Dir>/<Prefix>-config/ under
	// their base names (base-2.ext… when two share one).
	ConfigFiles []string
	// PgDump and PgRestore are the executables (settings backup.pg_dump
	// and backup.pg_restore), by default "pg_dump" and "pg_restore" from
	// PATH.
	PgDump, PgRestore string
	// Progress, when set, is called while a dump runs, from another
	// goroutine, with the bytes written so far: the activity heartbeats
	// with it.
	Progress func(Progress)
	// ProgressEvery is how often the dump's size is reported (default
	// one second).
	ProgressEvery time.Duration
	// FreeSpace returns the bytes available on the filesystem holding a
	// directory (default: statfs).
	FreeSpace func(dir string) (uint64, error)

	// inspect, set by tests, sees each command before it starts.
	inspect func(*exec.Cmd)
}

// Progress is how far the running dump is.
type Progress struct {
	// Label is the database being dumped.
	Label string
	// Bytes is the size of its dump so far.
	Bytes int64
}

// Artifact is one file of the backup, as the runbook's restore needs it.
type Artifact struct {
	// Label is the database's label, or "config:<name>" for a config
	// copy.
	Label string
	// Path is the file in the backup directory.
	Path string
	// Source is the original file of a config copy (empty for a dump).
	Source string
	// Bytes and SHA256 (hex) describe the file's content.
	Bytes  int64
	SHA256 string
	// Reused: a previous attempt had already made this file, verified
	// against its checksum.
	Reused bool
}

// Result lists the backup's files: the dumps in the order of the
// databases given, then the config copies.
type Result struct {
	Artifacts []Artifact
}

// ErrNoRoom marks a backup refused because its directory's filesystem
// lacks room: retrying helps only once the operator has freed space.
var ErrNoRoom = errors.New("not enough room for the backup")

// ErrTool marks a pg_dump or pg_restore that is missing or too old for
// the server: a setup problem no retry fixes.
var ErrTool = errors.New("backup tool unusable")

// ErrBusy marks a backup refused because another attempt at the same
// files is still running: retryable.
var ErrBusy = errors.New("backup already running")

// marked is an error that errors.Is matches to kind without repeating
// kind's text in its message.
type marked struct {
	error
	kind error
}

func (m marked) Is(target error) bool { return target == m.kind }

func (m marked) Unwrap() error { return m.error }

// validLabel keeps labels usable in file names.
var validLabel = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// dumpJob is one database to dump, and what a previous attempt left.
type dumpJob struct {
	label string
	conn  conn
	// connString is for the size estimate, made with pgx as masflow
	// connects.
	connString secret.String
	final      string
	// done is the dump a previous attempt completed, if any.
	done *Artifact
}

// Run backs up the databases and the config files into o.Dir, reusing
// the files a previous attempt completed. It refuses before dumping when
// the directory's filesystem lacks room (ErrNoRoom), and while another
// attempt at the same files still runs (ErrBusy). Cancelling ctx kills
// pg_dump and leaves a .partial file, removed by the next Run.
func Run(ctx context.Context, o Options, dbs ...Database) (Result, error) {
	o, err := o.withDefaults()
	if err != nil {
		return Result{}, err
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return Result{}, fmt.Errorf("creating backup.dir: %w", err)
	}
	release, err := lock(filepath.Join(o.Dir, o.Prefix+".lock"))
	if err != nil {
		return Result{}, err
	}
	defer release()
	jobs, err := o.planDumps(dbs)
	if err != nil {
		return Result{}, err
	}
	copies, err := o.planCopies()
	if err != nil {
		return Result{}, err
	}
	if err := o.checkRoom(ctx, jobs, copies); err != nil {
		return Result{}, err
	}
	var res Result
	for _, j := range jobs {
		a, err := o.dump(ctx, j)
		if err != nil {
			return Result{}, err
		}
		res.Artifacts = append(res.Artifacts, a)
	}
	for _, c := range copies {
		a, err := copyConfig(c)
		if err != nil {
			return Result{}, err
		}
		res.Artifacts = append(res.Artifacts, a)
	}
	return res, nil
}

// withDefaults fills the defaults and refuses options no run can use,
// a missing tool included, before anything is written.
func (o Options) withDefaults() (Options, error) {
	if o.Dir == "" {
		return o, errors.New("backup.dir is not set: set it to a directory with room for both database dumps")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return o, fmt.Errorf("backup.dir %s: %w", o.Dir, err)
	}
	o.Dir = dir
	if o.Prefix == "" || o.Prefix != filepath.Base(o.Prefix) || o.Prefix == ".." {
		return o, fmt.Errorf("backup prefix %q must be a non-empty file name", o.Prefix)
	}
	if o.PgDump == "" {
		o.PgDump = "pg_dump"
	}
	if o.PgRestore == "" {
		o.PgRestore = "pg_restore"
	}
	if o.Progress == nil {
		o.Progress = func(Progress) {}
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = time.Second
	}
	if o.FreeSpace == nil {
		o.FreeSpace = freeSpace
	}
	if err := findTool(o.PgDump, "backup.pg_dump"); err != nil {
		return o, err
	}
	return o, findTool(o.PgRestore, "backup.pg_restore")
}

// findTool fails when an executable cannot be run, naming the setting.
func findTool(path, setting string) error {
	if _, err := exec.LookPath(path); err != nil {
		var ee *exec.Error
		if errors.As(err, &ee) {
			err = ee.Err
		}
		return marked{fmt.Errorf("%s is %q, which cannot be run (%v): install PostgreSQL's client tools "+
			"(of at least the server's major version) or set %s to the executable's path",
			setting, path, err, setting), ErrTool}
	}
	return nil
}

// planDumps names each database's dump and finds those a previous
// attempt completed.
func (o Options) planDumps(dbs []Database) ([]dumpJob, error) {
	seen := map[string]bool{}
	jobs := make([]dumpJob, 0, len(dbs))
	for _, db := range dbs {
		if !validLabel.MatchString(db.Label) || seen[db.Label] {
			return nil, fmt.Errorf("database label %q must be unique and made of a-z, 0-9, _ and -", db.Label)
		}
		seen[db.Label] = true
		c, err := parseConnString(db.ConnString)
		if err != nil {
			return nil, fmt.Errorf("backing up the %s database: %w", db.Label, err)
		}
		j := dumpJob{label: db.Label, conn: c, connString: db.ConnString,
			final: filepath.Join(o.Dir, o.Prefix+"-"+db.Label+".dump")}
		if j.done, err = completed(j.final); err != nil {
			return nil, err
		}
		jobs = append(jobs, j)
	}
	return jobs, nil
}

// planCopies prepares the config directory and its copies.
func (o Options) planCopies() ([]configCopy, error) {
	if len(o.ConfigFiles) == 0 {
		return nil, nil
	}
	dir := filepath.Join(o.Dir, o.Prefix+"-config")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the config backup directory: %w", err)
	}
	return planCopies(o.ConfigFiles, dir)
}
