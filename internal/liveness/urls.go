package liveness

import (
	"net"
	"slices"
	"strconv"
	"strings"
)

// SynapseHealthURLs lists /health of every HTTP listener in Synapse's
// config; wildcard binds are probed on loopback.
func SynapseHealthURLs(raw map[string]any) []string {
	var out []string
	list, _ := raw["listeners"].([]any)
	for _, item := range list {
		l, _ := item.(map[string]any)
		if t, _ := l["type"].(string); t != "http" {
			continue
		}
		port, ok := l["port"].(int)
		if !ok {
			continue
		}
		scheme := "http"
		if tls, _ := l["tls"].(bool); tls {
			scheme = "https"
		}
		binds, _ := l["bind_addresses"].([]any)
		if len(binds) == 0 {
			binds = []any{"127.0.0.1"}
		}
		for _, b := range binds {
			host, _ := b.(string)
			out = append(out, scheme+"://"+net.JoinHostPort(loopbackFor(host), strconv.Itoa(port))+"/health")
		}
	}
	return dedupe(out)
}

// MASHealthURLs lists /health of every bind of MAS's http.listeners.
func MASHealthURLs(raw map[string]any) []string {
	var out []string
	httpSection, _ := raw["http"].(map[string]any)
	list, _ := httpSection["listeners"].([]any)
	for _, item := range list {
		l, _ := item.(map[string]any)
		binds, _ := l["binds"].([]any)
		for _, b := range binds {
			if addr, ok := masBind(b); ok {
				out = append(out, addr)
			}
		}
	}
	return dedupe(out)
}

// masBind is the /health URL of one MAS bind ({address: "host:port"} or
// {host, port}); false for a bind that is not TCP (a socket, an fd).
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
	return "http://" + net.JoinHostPort(loopbackFor(host), port) + "/health", true
}

// loopbackFor probes wildcard binds on loopback.
func loopbackFor(host string) string {
	switch h := strings.Trim(host, "[]"); h {
	case "", "0.0.0.0", "::":
		return "127.0.0.1"
	default:
		return h
	}
}

// dedupe keeps the first of each URL, in order.
func dedupe(in []string) []string {
	var out []string
	for _, s := range in {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
