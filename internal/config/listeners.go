package config

import (
	"net"
	"slices"
	"strconv"
	"strings"
)

// Listener is one HTTP bind of Synapse or MAS, as reached from the same
// host: a wildcard bind is reached on loopback.
type Listener struct {
	// Scheme is http, or https for a Synapse listener with tls: true.
	Scheme string
	// Addr is host:port.
	Addr string
	// Resources are the listener's resource names (Synapse's client,
	// federation…; MAS's discovery, compat, health…).
	Resources []string
}

// URL is the listener's base URL.
func (l Listener) URL() string { return l.Scheme + "://" + l.Addr }

// Serves reports whether the listener has the resource.
func (l Listener) Serves(resource string) bool { return slices.Contains(l.Resources, resource) }

// SynapseListeners lists the binds of Synapse's http listeners
// (listeners[] with type: http; no bind_addresses means loopback, as
// masflow probes it).
func SynapseListeners(raw map[string]any) []Listener {
	var out []Listener
	list, _ := raw["listeners"].([]any)
	for _, item := range list {
		l, _ := item.(map[string]any)
		port, ok := l["port"].(int)
		if t, _ := l["type"].(string); t != "http" || !ok {
			continue
		}
		scheme := "http"
		if tls, _ := l["tls"].(bool); tls {
			scheme = "https"
		}
		var names []string
		res, _ := l["resources"].([]any)
		for _, r := range res {
			rm, _ := r.(map[string]any)
			ns, _ := rm["names"].([]any)
			for _, n := range ns {
				if s, ok := n.(string); ok {
					names = append(names, s)
				}
			}
		}
		binds, _ := l["bind_addresses"].([]any)
		if len(binds) == 0 {
			binds = []any{"127.0.0.1"}
		}
		for _, b := range binds {
			host, _ := b.(string)
			out = append(out, Listener{Scheme: scheme, Addr: net.JoinHostPort(Loopback(host), strconv.Itoa(port)), Resources: names})
		}
	}
	return out
}

// MASListeners lists the binds of MAS's http.listeners (address, or
// host and port).
func MASListeners(raw map[string]any) []Listener {
	var out []Listener
	h, _ := raw["http"].(map[string]any)
	list, _ := h["listeners"].([]any)
	for _, item := range list {
		l, _ := item.(map[string]any)
		var names []string
		res, _ := l["resources"].([]any)
		for _, r := range res {
			rm, _ := r.(map[string]any)
			if s, ok := rm["name"].(string); ok {
				names = append(names, s)
			}
		}
		binds, _ := l["binds"].([]any)
		for _, b := range binds {
			if addr, ok := masBind(b); ok {
				out = append(out, Listener{Scheme: "http", Addr: addr, Resources: names})
			}
		}
	}
	return out
}

// masBind is one binds[] entry as host:port on loopback for wildcards.
func masBind(b any) (string, bool) {
	bind, _ := b.(map[string]any)
	addr, _ := bind["address"].(string)
	if addr == "" {
		host, _ := bind["host"].(string)
		port, ok := bind["port"].(int)
		if !ok {
			return "", false
		}
		addr = net.JoinHostPort(host, strconv.Itoa(port))
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", false
	}
	return net.JoinHostPort(Loopback(host), port), true
}

// Loopback is where a bind is reached from its own host: a wildcard
// (empty, 0.0.0.0, ::) on 127.0.0.1.
func Loopback(host string) string {
	switch strings.Trim(host, "[]") {
	case "", "0.0.0.0", "::":
		return "127.0.0.1"
	}
	return strings.Trim(host, "[]")
}
