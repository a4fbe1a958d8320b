// Package wellknown writes the client discovery document
// (/.well-known/matrix/client) a homeserver serves once MAS handles
// authentication: clients find Synapse through m.homeserver.base_url and
// MAS through Synapse's auth_metadata, so the document no longer names
// MAS (docs/runbook.md, "Before the downtime").
package wellknown

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/masflow/masflow/internal/config"
)

// ObsoleteAuthKey is the discovery key of MAS's older docs (MSC2965):
// clients that read it compare its issuer byte for byte with MAS's, and
// it goes stale when MAS moves, so the document drops it.
const ObsoleteAuthKey = "org.matrix.msc2965.authentication"

// BaseURL is where clients reach Synapse: its public_baseurl, else
// https://<server_name>/ (Synapse's own default).
func BaseURL(syn *config.Synapse) string {
	if b, _ := syn.Raw["public_baseurl"].(string); b != "" {
		return b
	}
	return "https://" + syn.ServerName + "/"
}

// Client returns the discovery document: every key of existing (the file
// served today; empty for none) kept, m.homeserver.base_url set to
// baseURL, ObsoleteAuthKey removed. The output is indented JSON with
// sorted keys, so writing it twice changes nothing.
func Client(existing []byte, baseURL string) ([]byte, error) {
	doc := map[string]any{}
	if len(bytes.TrimSpace(existing)) > 0 {
		if err := json.Unmarshal(existing, &doc); err != nil {
			return nil, fmt.Errorf("the current discovery document is not a JSON object (%v): fix it, or start from `starter well-known` alone", err)
		}
	}
	hs, _ := doc["m.homeserver"].(map[string]any)
	if hs == nil {
		hs = map[string]any{}
	}
	hs["base_url"] = baseURL
	doc["m.homeserver"] = hs
	delete(doc, ObsoleteAuthKey)
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}
