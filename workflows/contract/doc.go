// Package contract is what crosses Temporal between masflow's workflow
// and its activities: the step and activity names, every activity's
// input and result, the error types retry policies classify, and the
// metric names both sides emit. It depends on nothing of masflow's
// internal packages, so the workflow code (which imports only this)
// cannot reach a database, a file or a controller, and reshaping an
// internal type can never silently change what a running workflow
// decodes.
package contract
