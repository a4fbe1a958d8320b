package verify

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/masflow/masflow/internal/secret"
)

// discovery: MAS's own discovery document is reachable where the issuer
// Synapse advertises says, and names that issuer byte for byte.
func (c *client) discovery(ctx context.Context, advertised string) Probe {
	const name = "issuer"
	if advertised == "" {
		return failed(name, "not checked: Synapse advertised no issuer (see auth_metadata)")
	}
	u := strings.TrimRight(advertised, "/") + "/.well-known/openid-configuration"
	a, err := c.get(ctx, u, "")
	if err != nil {
		return Probe{Name: name, Detail: fmt.Sprintf("MAS's discovery document %s is not reachable from here: %v", u, err),
			Fix: "clients fetch it: route MAS's public host to MAS, and set http.public_base (or http.issuer) to the URL clients reach MAS at"}
	}
	p := classifyDiscovery(a, advertised)
	p.Name = name
	return p
}

// classifyDiscovery judges <issuer>/.well-known/openid-configuration:
// MAS's document, whose issuer is the advertised one exactly.
func classifyDiscovery(a answer, advertised string) Probe {
	var doc struct {
		Issuer string `json:"issuer"`
	}
	switch {
	case a.status != http.StatusOK:
		return Probe{Answered: byUnknown, Detail: fmt.Sprintf("%s answered %d%s, expected MAS's discovery document", a.url, a.status, a.said()),
			Fix: "route MAS's public host (and the path of http.public_base) to MAS's listener with the discovery resource"}
	case json.Unmarshal(a.body, &doc) != nil || doc.Issuer == "":
		return Probe{Answered: byUnknown, Detail: fmt.Sprintf("%s answered 200 without an issuer: not MAS's discovery document", a.url),
			Fix: "route MAS's public host to MAS"}
	case doc.Issuer != advertised:
		return Probe{Answered: byMAS,
			Detail: fmt.Sprintf("Synapse advertises issuer %q but MAS's discovery document %s says %q: clients compare them "+
				"byte for byte (a trailing slash counts)", advertised, a.url, doc.Issuer),
			Fix: "make both one spelling: Synapse serves what MAS answers at matrix_authentication_service.endpoint, so " +
				"check that the endpoint reaches the same MAS (with the same http.issuer / http.public_base) as clients, " +
				"then restart Synapse, which caches MAS's metadata"}
	}
	return Probe{OK: true, Answered: byMAS, Detail: fmt.Sprintf("%s names issuer %q, as Synapse advertises", a.url, doc.Issuer)}
}

// sharedSecret: Synapse accepts MAS's shared secret on the endpoints
// only MAS calls, at MAS's matrix.endpoint (the secret goes nowhere
// else). The localpart asked about is random, so nothing is changed.
func (c *client) sharedSecret(ctx context.Context) Probe {
	const name = "shared secret"
	if c.o.SharedSecret.IsEmpty() {
		return Probe{Name: name, Detail: "MAS has no matrix.secret to try",
			Fix: "set matrix.secret (or matrix.secret_file) in MAS's config: Synapse and MAS share it"}
	}
	localpart, err := c.randomName("masflow-verify-")
	if err != nil {
		return failed(name, "%v", err)
	}
	u := strings.TrimRight(c.o.SynapseForMAS, "/") + "/_synapse/mas/is_localpart_available?localpart=" + localpart
	a, err := c.get(ctx, u, c.o.SharedSecret)
	if err != nil {
		p := failed(name, "%s", networkDetail(err, "Synapse at MAS's matrix.endpoint", "matrix.endpoint in MAS's config", c.timeout))
		p.Fix = "verify runs where MAS runs (the host worker): it must reach Synapse where MAS does"
		return scrub(p, c.o.SharedSecret)
	}
	p := classifySharedSecret(a)
	p.Name = name
	return scrub(p, c.o.SharedSecret)
}

// classifySharedSecret judges Synapse's answer to a request of MAS's:
// 200 (free) or 400 (taken, invalid) once authenticated; 403 when the
// secrets differ; 404 when Synapse there does not delegate.
func classifySharedSecret(a answer) Probe {
	switch a.status {
	case http.StatusOK, http.StatusBadRequest:
		return Probe{OK: true, Answered: bySynapse, Detail: fmt.Sprintf("Synapse at MAS's matrix.endpoint accepts MAS's shared secret (%d)", a.status)}
	case http.StatusForbidden:
		return Probe{Answered: bySynapse, Detail: fmt.Sprintf("Synapse at MAS's matrix.endpoint refuses MAS's shared secret (403%s)", a.said()),
			Fix: "make matrix_authentication_service.secret (or the file its secret_path names) in Synapse's config exactly " +
				"MAS's matrix.secret (a trailing newline in a file counts), then restart Synapse"}
	case http.StatusNotFound:
		return Probe{Answered: byUnknown, Detail: fmt.Sprintf("%s answered 404: delegation is off where MAS reaches Synapse", withoutSecretPath(a.url)),
			Fix: "point MAS's matrix.endpoint at a Synapse listener with the client resource, and enable " +
				"matrix_authentication_service in Synapse's config (then restart it)"}
	}
	return Probe{Answered: byUnknown, Detail: fmt.Sprintf("Synapse at MAS's matrix.endpoint answered %d%s, expected 200", a.status, a.said()),
		Fix: "look at Synapse's log"}
}

// withoutSecretPath shows the endpoint probed without the random name.
func withoutSecretPath(u string) string {
	base, _, _ := strings.Cut(u, "?")
	return base
}

// scrub replaces every secret in the probe's text.
func scrub(p Probe, secrets ...secret.String) Probe {
	for _, s := range secrets {
		if s.IsEmpty() {
			continue
		}
		p.Detail = strings.ReplaceAll(p.Detail, s.Reveal(), secret.Redacted)
		p.Fix = strings.ReplaceAll(p.Fix, s.Reveal(), secret.Redacted)
	}
	return p
}
