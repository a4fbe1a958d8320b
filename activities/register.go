package activities

import (
	"context"

	"github.com/masflow/masflow/workflows/contract"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/worker"
)

// Set is every activity struct a worker may host.
type Set struct {
	Advise     *AdviseActivities
	Import     *ImportActivities
	Homeserver *HomeserverActivities
}

// Register registers the non-nil activity structs under the contract's
// names: the single source of activity names for the worker, tests and
// the replayer. Each registration is checked by the compiler against the
// contract's input and result types.
func Register(r worker.ActivityRegistry, s Set) {
	if a := s.Advise; a != nil {
		register(r, contract.Advise, a.Advise)
	}
	if a := s.Import; a != nil {
		register(r, contract.PrepareImport, a.PrepareImport)
		register(r, contract.HoldSnapshot, a.HoldSnapshot)
		register(r, contract.AwaitSnapshot, a.AwaitSnapshot)
		register(r, contract.HoldWriterLock, a.HoldWriterLock)
		register(r, contract.PauseSchema, a.PauseSchema)
		register(r, contract.PlanEntity, a.PlanEntity)
		register(r, contract.ImportShard, a.ImportShard)
		register(r, contract.RestoreSchema, a.RestoreSchema)
		register(r, contract.Reconcile, a.Reconcile)
		register(r, contract.FinishImport, a.FinishImport)
		register(r, contract.DiscardDryRun, a.DiscardDryRun)
		register(r, contract.CompletePass, a.CompletePass)
		register(r, contract.CompactEvidence, a.CompactEvidence)
		register(r, contract.RestartBound, a.RestartBound)
		register(r, contract.BeginDelta, a.BeginDelta)
		register(r, contract.ApplyPass, a.ApplyPass)
	}
	if a := s.Homeserver; a != nil {
		register(r, contract.Backup, a.Backup)
		register(r, contract.StopHomeserver, a.StopHomeserver)
		register(r, contract.SyncSchema, a.SyncSchema)
		register(r, contract.Reconfigure, a.Reconfigure)
		register(r, contract.StartHomeserver, a.StartHomeserver)
		register(r, contract.Verify, a.Verify)
		register(r, contract.RestoreConfig, a.RestoreConfig)
	}
}

func register[I, O any](r worker.ActivityRegistry, a contract.Activity[I, O], fn func(context.Context, I) (O, error)) {
	r.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: a.Name})
}
