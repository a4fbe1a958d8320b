package activities

import "go.temporal.io/sdk/worker"

// Set is every activity struct a worker may host.
type Set struct {
	Advise     *AdviseActivities
	Import     *ImportActivities
	Homeserver *HomeserverActivities
}

// Register registers the non-nil activity structs: the single source of
// activity names for the worker and tests.
func Register(r worker.Registry, s Set) {
	if s.Advise != nil {
		r.RegisterActivity(s.Advise)
	}
	if s.Import != nil {
		r.RegisterActivity(s.Import)
	}
	if s.Homeserver != nil {
		r.RegisterActivity(s.Homeserver)
	}
}
