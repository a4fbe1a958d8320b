package liveness

import (
	"slices"

	"github.com/masflow/masflow/internal/config"
)

// SynapseHealthURLs lists /health of every HTTP listener in Synapse's
// config; wildcard binds are probed on loopback.
func SynapseHealthURLs(raw map[string]any) []string {
	return healthURLs(config.SynapseListeners(raw))
}

// MASHealthURLs lists /health of every bind of MAS's http.listeners;
// wildcard binds are probed on loopback.
func MASHealthURLs(raw map[string]any) []string { return healthURLs(config.MASListeners(raw)) }

// healthURLs is each listener's /health, once.
func healthURLs(ls []config.Listener) []string {
	var out []string
	for _, l := range ls {
		if u := l.URL() + "/health"; !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out
}
