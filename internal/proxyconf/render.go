package proxyconf

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/template"
)

// Formats are the proxies `starter proxy-config --format` writes for.
var Formats = []string{"nginx", "caddy", "traefik", "haproxy"}

// header opens every format's output: what it is, where it came from.
const header = `{{c}} Routes of MAS's compatibility layer for {{.ServerName}}, written by
{{c}} ` + "`starter proxy-config --format {{format}}`" + ` from Synapse's and MAS's configs
{{c}} (docs/runbook.md, "Before the downtime"). Login, logout and refresh of
{{c}} every client API version go to MAS, the rest of Synapse's host to Synapse,
{{c}} MAS's own host to MAS.
`

const nginxTemplate = header + `# Include it in nginx's http block.

upstream masflow_synapse {
    server {{hostport .Synapse}};
}

upstream masflow_mas {
    server {{hostport .MAS}};
}
{{range .Sites}}{{$site := .}}
server {
    listen {{.Port}}{{if .TLS}} ssl{{end}};
    server_name {{.Host}};
{{- if .TLS}}
    ssl_certificate {{cert $site}};
    ssl_certificate_key {{key $site}};
{{- end}}
    # Media uploads pass through the proxy.
    client_max_body_size 100M;
{{range .Routes}}
{{- if eq .Kind "compat"}}
    # The compatibility layer: MAS answers these once it delegates.
    location ~ {{pattern}} {
{{- else if eq .Kind "prefix"}}
    # MAS under its public path.
    location {{.Prefix}} {
{{- else}}
    location / {
{{- end}}
        proxy_pass {{scheme $.Synapse $.MAS .Backend}}://masflow_{{.Backend}};
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_http_version 1.1;
    }
{{end}}}
{{end}}`

const caddyTemplate = header + `{{range .Sites}}{{$site := .}}
{{.Scheme}}://{{.Host}}:{{.Port}} {
{{- if and .TLS $.CertFile}}
	tls {{$.CertFile}} {{$.KeyFile}}
{{- end}}
{{- range .Routes}}
{{- if eq .Kind "compat"}}
	# The compatibility layer: MAS answers these once it delegates.
	@masflow_compat path_regexp masflow_compat {{pattern}}
	handle @masflow_compat {
{{- else if eq .Kind "prefix"}}
	handle {{.Prefix}}* {
{{- else}}
	handle {
{{- end}}
		reverse_proxy {{upstreamOf $.Synapse $.MAS .Backend}}
	}
{{- end}}
}
{{end}}`

const traefikTemplate = header + `# A file-provider dynamic configuration. Its entry points must exist in
# Traefik's static configuration:
{{- range $ep := entryPoints .Sites}}
#   entryPoints: {{$ep}}: {address: ":{{port $ep}}"}
{{- end}}
http:
  routers:
{{- range $i, $site := .Sites}}{{range .Routes}}
    masflow-{{$i}}-{{.Kind}}:
      rule: "Host(` + "`{{$site.Host}}`" + `){{if eq .Kind "compat"}} && PathRegexp(` + "`{{pattern}}`" + `){{else if eq .Kind "prefix"}} && PathPrefix(` + "`{{.Prefix}}`" + `){{end}}"
      priority: {{priority .Kind}}
      entryPoints: [masflow-{{$site.Port}}]
      service: masflow-{{.Backend}}
{{- if $site.TLS}}
      tls: {}
{{- end}}
{{- end}}{{end}}
  services:
    masflow-synapse:
      loadBalancer:
        passHostHeader: true
        servers:
          - url: "{{.Synapse}}"
    masflow-mas:
      loadBalancer:
        passHostHeader: true
        servers:
          - url: "{{.MAS}}"
{{- if .CertFile}}
tls:
  certificates:
    - certFile: {{.CertFile}}
      keyFile: {{.KeyFile}}
{{- end}}
`

const haproxyTemplate = header + `# Load it after your global and defaults sections
# (haproxy -f haproxy.cfg -f masflow.cfg).
{{range $port, $sites := byPort .Sites}}
frontend masflow_{{$port}}
    mode http
    bind :{{$port}}{{if (index $sites 0).TLS}} ssl crt {{haproxyCrt}}{{end}}
    option forwardfor
    http-request set-header X-Forwarded-Proto {{(index $sites 0).Scheme}}
    acl masflow_compat path_reg {{pattern}}
{{- range $i, $site := $sites}}
    acl masflow_host_{{$i}} req.hdr(host),field(1,:) -i {{.Host}}
{{- range .Routes}}
{{- if eq .Kind "compat"}}
    use_backend masflow_mas if masflow_host_{{$i}} masflow_compat
{{- else if eq .Kind "prefix"}}
    use_backend masflow_mas if masflow_host_{{$i}} { path_beg {{.Prefix}} }
{{- else}}
    use_backend masflow_{{.Backend}} if masflow_host_{{$i}}
{{- end}}
{{- end}}
{{- end}}
{{end}}
backend masflow_synapse
    mode http
    server synapse {{hostport .Synapse}}{{if tlsUpstream .Synapse}} ssl verify none{{end}}

backend masflow_mas
    mode http
    server mas {{hostport .MAS}}
`

var templates = map[string]string{"nginx": nginxTemplate, "caddy": caddyTemplate, "traefik": traefikTemplate, "haproxy": haproxyTemplate}

// Render writes the plan for one of Formats.
func Render(w io.Writer, format string, p Plan) error {
	body, ok := templates[format]
	if !ok {
		return fmt.Errorf("proxy format %q: use one of %s", format, strings.Join(Formats, ", "))
	}
	comment := "#"
	t, err := template.New(format).Funcs(funcs(format, comment, p)).Parse(body)
	if err != nil {
		return fmt.Errorf("proxy format %s: %w", format, err)
	}
	return t.Execute(w, p)
}

// funcs are the templates' helpers.
func funcs(format, comment string, p Plan) template.FuncMap {
	return template.FuncMap{
		"c":        func() string { return comment },
		"format":   func() string { return format },
		"pattern":  func() string { return CompatPattern },
		"hostport": hostport,
		"scheme": func(syn, mas, backend string) string {
			return scheme(pick(syn, mas, backend))
		},
		"upstreamOf":  func(syn, mas, backend string) string { return pick(syn, mas, backend) },
		"tlsUpstream": func(u string) bool { return scheme(u) == "https" },
		"cert": func(s Site) string {
			if p.CertFile != "" {
				return p.CertFile
			}
			return "/etc/letsencrypt/live/" + s.Host + "/fullchain.pem"
		},
		"key": func(s Site) string {
			if p.KeyFile != "" {
				return p.KeyFile
			}
			return "/etc/letsencrypt/live/" + s.Host + "/privkey.pem"
		},
		// HAProxy wants one PEM with certificate and key, or a directory
		// of them (chosen by SNI).
		"haproxyCrt": func() string {
			if p.CertFile != "" {
				return p.CertFile
			}
			return "/etc/haproxy/certs/"
		},
		"priority":    func(kind string) int { return map[string]int{"compat": 300, "prefix": 200}[kind] + 100 },
		"entryPoints": entryPoints,
		"port":        func(ep string) string { return strings.TrimPrefix(ep, "masflow-") },
		"byPort":      byPort,
	}
}

// pick is the upstream URL of a backend.
func pick(syn, mas, backend string) string {
	if backend == ToMAS {
		return mas
	}
	return syn
}

// scheme and hostport split an upstream URL.
func scheme(u string) string { s, _, _ := strings.Cut(u, "://"); return s }

func hostport(u string) string { _, hp, _ := strings.Cut(u, "://"); return strings.TrimRight(hp, "/") }

// entryPoints are the Traefik entry points the sites need, one per port.
func entryPoints(sites []Site) []string {
	var out []string
	for _, s := range sites {
		if ep := "masflow-" + s.Port; !slices.Contains(out, ep) {
			out = append(out, ep)
		}
	}
	return out
}

// byPort groups the sites by public port (one HAProxy frontend each).
func byPort(sites []Site) map[string][]Site {
	out := map[string][]Site{}
	for _, s := range sites {
		out[s.Port] = append(out[s.Port], s)
	}
	return out
}
