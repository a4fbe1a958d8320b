package advisor

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// cutoverChecks look at what clients meet after the cut-over
// (docs/checks.md, "After the cut-over"): the application services that
// lose their login, and the issuer MAS will advertise.
func cutoverChecks(_ context.Context, in Input, add func(Finding)) error {
	appServiceCheck(in, add)
	publicBaseChecks(in, add)
	return nil
}

// appService is what a registration file says about the service.
type appService struct {
	file, id  string
	msc4190   bool
	readError error
}

// appServices reads every registration in app_service_config_files.
func appServices(raw map[string]any) []appService {
	files, _ := raw["app_service_config_files"].([]any)
	var out []appService
	for _, f := range files {
		path, _ := f.(string)
		a := appService{file: path}
		var reg struct {
			ID      string `yaml:"id"`
			MSC4190 bool   `yaml:"io.element.msc4190"`
		}
		b, err := os.ReadFile(path)
		if err == nil {
			err = yaml.Unmarshal(b, &reg)
		}
		a.id, a.msc4190, a.readError = reg.ID, reg.MSC4190, err
		out = append(out, a)
	}
	return out
}

// appServiceCheck: through MAS, application services can no longer log
// in with m.login.application_service; they must manage their devices
// through the appservice API (MSC4190).
func appServiceCheck(in Input, add func(Finding)) {
	services := appServices(in.Synapse.Raw)
	if len(services) == 0 {
		return
	}
	var lines []string
	for _, a := range services {
		switch {
		case a.readError != nil:
			lines = append(lines, fmt.Sprintf("%s (unreadable here: %v)", a.file, a.readError))
		case a.msc4190:
			lines = append(lines, fmt.Sprintf("%s (id %q, io.element.msc4190: true)", a.file, a.id))
		default:
			lines = append(lines, fmt.Sprintf("%s (id %q, without io.element.msc4190: true)", a.file, a.id))
		}
	}
	f := finding("appservice_login", Warning,
		"check that each bridge's release supports MSC4190 and set io.element.msc4190: true in its registration "+
			"(and the bridge's own MSC4190 option); one that logs in with m.login.application_service stops working at the cut-over",
		"%s: %d application services are registered: %s; after the cut-over they must manage devices through the appservice "+
			"API (MSC4190) and must not log in with m.login.application_service, which MAS does not offer",
		in.Synapse.Src("app_service_config_files"), len(services), strings.Join(lines, "; "))
	f.Count = count(int64(len(services)))
	add(f)
}

// publicBaseChecks: MAS derives its issuer and every URL it hands
// clients from http.public_base (unless http.issuer is set).
func publicBaseChecks(in Input, add func(Finding)) {
	m := in.MAS
	if m.PublicBase == "" {
		add(finding("mas_public_base_unset", Error,
			"set http.public_base in MAS's config to the https URL clients reach MAS at (through the reverse proxy)",
			"%v: http.public_base is not set: MAS would advertise its default http://[::]:8080/ as issuer and in every link",
			m.Files))
		return
	}
	u, err := url.Parse(m.PublicBase)
	switch {
	case err != nil || u.Hostname() == "":
		add(finding("mas_public_base_bind_address", Error, "set http.public_base to the https URL clients reach MAS at",
			"%v: http.public_base %q is not an absolute URL", m.Files, m.PublicBase))
		return
	case isBindAddress(u.Hostname()):
		add(finding("mas_public_base_bind_address", Error,
			"set http.public_base to the URL clients reach MAS at (its public host name), not the address MAS listens on",
			"%v: http.public_base %q names a bind address: no client can reach MAS there", m.Files, m.PublicBase))
	case u.Scheme != "https":
		add(finding("mas_public_base_not_https", Warning,
			"serve MAS over https through the reverse proxy and set http.public_base to that URL; acknowledge only for a test setup",
			"%v: http.public_base %q is not https: clients refuse a plain-http issuer outside of tests", m.Files, m.PublicBase))
	}
	add(finding("mas_issuer", Info, "",
		"MAS will advertise issuer %q (from %s): Synapse's auth_metadata and MAS's discovery document must spell it exactly so",
		advertisedIssuer(m.Issuer), issuerSource(m.Raw)))
}

// isBindAddress reports whether a host is an address MAS listens on
// rather than one clients reach.
func isBindAddress(host string) bool {
	switch strings.Trim(host, "[]") {
	case "0.0.0.0", "::", "":
		return true
	}
	return false
}

// advertisedIssuer writes the issuer as MAS does: a URL without a path
// gains its slash.
func advertisedIssuer(issuer string) string {
	u, err := url.Parse(issuer)
	if err != nil || u.Path != "" {
		return issuer
	}
	u.Path = "/"
	return u.String()
}

// issuerSource names the key the issuer comes from.
func issuerSource(raw map[string]any) string {
	if present(raw, "http.issuer") {
		return "http.issuer"
	}
	return "http.public_base"
}
