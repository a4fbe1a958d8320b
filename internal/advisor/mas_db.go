package advisor

import (
	"context"
	"errors"

	"github.com/masflow/masflow/internal/mas"
)

// masDBChecks look at the MAS database (docs/checks.md, "MAS's database").
func masDBChecks(ctx context.Context, in Input, add func(Finding)) error {
	db := in.MASDB
	if db == nil {
		add(finding("mas_db_not_checked", Info, "give the advisor MAS's database", "the MAS database was not checked"))
		return nil
	}
	ref, err := mas.ReferenceRunTables(ctx, db)
	if err != nil {
		return err
	}
	if len(ref) > 0 {
		add(finding("reference_run_in_progress", Error,
			"finish that run with mas-cli syn2mas, or restore the MAS database from its backup, before using masflow",
			"the MAS database holds a half-finished mas-cli syn2mas run (tables %s)", quoteList(ref)))
		return nil
	}
	if _, err := mas.DetectSchema(ctx, db); err != nil {
		if !errors.Is(err, mas.ErrUnsupportedSchema) {
			return err
		}
		add(finding("mas_schema_unsupported", Error, "run a supported MAS release and let it create its schema ("+mas.SupportedVersions+")",
			"%v", err))
		return nil
	}
	if err := emptinessCheck(ctx, in, add); err != nil {
		return err
	}
	held, err := mas.LockHeld(ctx, db)
	if err != nil {
		return err
	}
	if held {
		add(finding("migrator_lock_held", Error, "wait for the other migrator (mas-cli syn2mas or masflow) to finish, or stop it",
			"another migrator holds the MAS database advisory lock %d", mas.ReferenceLockKey))
	}
	return nil
}

// emptinessCheck: the target tables must be empty, unless they hold
// masflow's own unfinished run for this homeserver (which resumes).
func emptinessCheck(ctx context.Context, in Input, add func(Finding)) error {
	full, err := mas.NonEmptyTables(ctx, in.MASDB)
	if err != nil {
		return err
	}
	run, err := mas.OwnRun(ctx, in.MASDB)
	if err != nil {
		return err
	}
	switch {
	case run.Resumed && run.ServerName == in.Synapse.ServerName:
		add(finding("masflow_run_in_progress", Info, "",
			"an unfinished masflow run for %s (started %s) is in the MAS database; the import resumes it",
			run.ServerName, run.Now.Format("2006-01-02 15:04:05Z07:00")))
	case run.Resumed:
		add(finding("mas_not_empty", Error, "point masflow at the MAS database of "+in.Synapse.ServerName,
			"the MAS database holds an unfinished masflow run for another homeserver (%s)", run.ServerName))
	case len(full) > 0:
		add(finding("mas_not_empty", Error, "the import needs a fresh MAS database: recreate it and run mas-cli config sync",
			"MAS tables %s already hold rows", quoteList(full)))
	}
	return nil
}
