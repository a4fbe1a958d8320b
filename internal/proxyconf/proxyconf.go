// Package proxyconf writes the reverse proxy routes a homeserver needs
// once MAS takes over authentication (docs/runbook.md, "Before the
// downtime"): the compatibility layer's three path families go to MAS,
// the rest of Synapse's host to Synapse, and MAS's own public host to
// MAS — for nginx, Caddy, Traefik or HAProxy, from Synapse's and MAS's
// configs.
package proxyconf

import (
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/masflow/masflow/internal/config"
)

// CompatPattern matches the paths MAS serves itself once it delegates:
// login (with /login/sso/redirect[/{idp}]), logout (with /logout/all) and
// refresh, of every client API version (v3, r0, …).
const CompatPattern = `^/_matrix/client/[^/]+/(login|logout|refresh)(/.*)?$`

// Options override what the configs say.
type Options struct {
	// SynapseUpstream and MASUpstream are where the proxy reaches them
	// (host:port); default: Synapse's listener with the client resource,
	// MAS's listener with the compat resource.
	SynapseUpstream, MASUpstream string
	// CertFile and KeyFile are the TLS certificate and key of the https
	// sites (for HAProxy, CertFile is one PEM holding both).
	CertFile, KeyFile string
}

// Plan is what the proxy must do.
type Plan struct {
	// ServerName is Synapse's server_name, for the comments.
	ServerName string
	// Synapse and MAS are where the proxy reaches each (scheme://host:port).
	Synapse, MAS string
	// Sites are the public hosts the proxy serves, Synapse's first.
	Sites             []Site
	CertFile, KeyFile string
}

// Site is one public host:port and its routes, most specific first.
type Site struct {
	// Scheme is http or https; Host and Port are the public ones.
	Scheme, Host, Port string
	Routes             []Route
}

// TLS reports whether the site terminates TLS.
func (s Site) TLS() bool { return s.Scheme == "https" }

// Route sends requests to a backend ("synapse" or "mas").
type Route struct {
	// Kind is "compat" (CompatPattern), "prefix" (Prefix and below) or
	// "rest" (everything else).
	Kind    string
	Prefix  string
	Backend string
}

// Backends of a Route.
const (
	ToSynapse = "synapse"
	ToMAS     = "mas"
)

// FromConfigs plans the routes from Synapse's public_baseurl and
// listeners and MAS's http.public_base and listeners.
func FromConfigs(syn *config.Synapse, mas *config.MAS, o Options) (Plan, error) {
	p := Plan{ServerName: syn.ServerName, CertFile: o.CertFile, KeyFile: o.KeyFile}
	var err error
	if p.Synapse, err = upstream(o.SynapseUpstream, config.SynapseListeners(syn.Raw), "client",
		"Synapse has no http listener with the client resource: add one, or give --synapse-upstream"); err != nil {
		return Plan{}, err
	}
	if p.MAS, err = upstream(o.MASUpstream, masListeners(mas), "compat",
		"MAS has no http.listeners entry with the compat resource: add {name: compat} to the listener the proxy reaches, or give --mas-upstream"); err != nil {
		return Plan{}, err
	}
	synURL, err := publicURL(synapseBase(syn), "Synapse's public_baseurl")
	if err != nil {
		return Plan{}, err
	}
	if mas.PublicBase == "" {
		return Plan{}, fmt.Errorf("%v: MAS has no http.public_base: set it to the https URL clients reach MAS at", mas.Files)
	}
	masURL, err := publicURL(mas.PublicBase, "MAS's http.public_base")
	if err != nil {
		return Plan{}, err
	}
	p.Sites, err = sites(synURL, masURL)
	return p, err
}

// synapseBase is public_baseurl, else Synapse's own default.
func synapseBase(syn *config.Synapse) string {
	if b, _ := syn.Raw["public_baseurl"].(string); b != "" {
		return b
	}
	return "https://" + syn.ServerName + "/"
}

// masListeners are MAS's listeners, or MAS's default one when it has
// none (every resource on port 8080).
func masListeners(mas *config.MAS) []config.Listener {
	if ls := config.MASListeners(mas.Raw); len(ls) > 0 {
		return ls
	}
	return []config.Listener{{Scheme: "http", Addr: "127.0.0.1:8080", Resources: []string{"discovery", "human", "oauth", "compat", "assets"}}}
}

// upstream is the override, else the first listener with the resource.
func upstream(override string, ls []config.Listener, resource, missing string) (string, error) {
	if override != "" {
		if strings.Contains(override, "://") {
			return override, nil
		}
		return "http://" + override, nil
	}
	for _, l := range ls {
		if l.Serves(resource) {
			return l.URL(), nil
		}
	}
	return "", fmt.Errorf("%s", missing)
}

// publicURL parses a public base URL; what names it is for the error.
func publicURL(s, what string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return nil, fmt.Errorf("%s is %q: it must be an absolute http(s) URL", what, s)
	}
	return u, nil
}

// port is the URL's port, or its scheme's.
func port(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "https" {
		return "443"
	}
	return "80"
}

// sites: Synapse's host with the compatibility routes (and MAS's path
// when MAS shares the host), and MAS's own host when it has one.
func sites(syn, mas *url.URL) ([]Site, error) {
	s := Site{Scheme: syn.Scheme, Host: syn.Hostname(), Port: port(syn)}
	s.Routes = []Route{{Kind: "compat", Backend: ToMAS}}
	masPath := strings.TrimRight(mas.Path, "/")
	shared := net.JoinHostPort(mas.Hostname(), port(mas)) == net.JoinHostPort(s.Host, s.Port)
	if shared && masPath == "" {
		return nil, fmt.Errorf("MAS's http.public_base %s is Synapse's public base: give MAS its own host, or a path (e.g. %s/auth/) "+
			"with the same prefix on its listener", mas, strings.TrimRight(syn.String(), "/"))
	}
	if shared {
		s.Routes = append(s.Routes, Route{Kind: "prefix", Prefix: masPath + "/", Backend: ToMAS})
	}
	s.Routes = append(s.Routes, Route{Kind: "rest", Backend: ToSynapse})
	out := []Site{s}
	if !shared {
		out = append(out, Site{Scheme: mas.Scheme, Host: mas.Hostname(), Port: port(mas),
			Routes: []Route{{Kind: "rest", Backend: ToMAS}}})
	}
	return out, nil
}
