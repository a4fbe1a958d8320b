package liveness

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/masflow/masflow/internal/config"
	yaml "go.yaml.in/yaml/v3"
)

func parse(t *testing.T, doc string) map[string]any {
	t.Helper()
	var raw map[string]any
	if err := yaml.Unmarshal([]byte(doc), &raw); err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestHealthURLsCoverEveryListener(t *testing.T) {
	cases := []struct {
		name string
		urls func(map[string]any) []string
		doc  string
		want []string
	}{
		{"Synapse's wildcard binds are probed on loopback, once", SynapseHealthURLs,
			"listeners: [{port: 8008, type: http, bind_addresses: ['::', '0.0.0.0']}]",
			[]string{"http://127.0.0.1:8008/health"}},
		{"a Synapse listener without binds listens on loopback", SynapseHealthURLs,
			"listeners: [{port: 8008, type: http}]", []string{"http://127.0.0.1:8008/health"}},
		{"a TLS listener is probed with https; an IPv6 bind keeps its brackets", SynapseHealthURLs,
			"listeners: [{port: 8448, type: http, tls: true, bind_addresses: ['::1']}]", []string{"https://[::1]:8448/health"}},
		{"a replication or metrics listener is not HTTP /health", SynapseHealthURLs,
			"listeners: [{port: 9000, type: metrics}, {port: 8008, type: http, bind_addresses: ['10.0.0.5']}]",
			[]string{"http://10.0.0.5:8008/health"}},
		{"MAS binds by address and by host and port", MASHealthURLs,
			"http: {listeners: [{binds: [{address: '[::]:8080'}, {host: localhost, port: 8081}]}]}",
			[]string{"http://127.0.0.1:8080/health", "http://localhost:8081/health"}},
		{"a MAS socket bind has no URL", MASHealthURLs,
			"http: {listeners: [{binds: [{socket: /run/mas.sock}]}]}", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.urls(parse(t, c.doc)); !slices.Equal(got, c.want) {
				t.Fatalf("got %q, want %q", got, c.want)
			}
		})
	}
}

// answering returns a loopback port whose listener answers every request
// with status; status 0: a port whose listener has gone.
func answering(status int) func(*testing.T) int {
	return func(t *testing.T) int {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) }))
		port := srv.Listener.Addr().(*net.TCPAddr).Port
		if status == 0 {
			srv.Close()
		}
		t.Cleanup(srv.Close)
		return port
	}
}

func TestProbeSeesWhatAnswers(t *testing.T) {
	cases := []struct {
		name                 string
		synPort, masPort     func(*testing.T) int
		wantSynapse, wantMAS int
		wantHealthy          bool
	}{
		{"nothing answers: stopped", answering(0), answering(0), 0, 0, false},
		{"Synapse answers 503 while it starts: alive, not healthy", answering(503), answering(0), 1, 0, false},
		{"both answer 200", answering(200), answering(200), 1, 1, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			syn := &config.Synapse{Raw: parse(t, fmt.Sprintf("listeners: [{port: %d, type: http}]", c.synPort(t)))}
			mas := &config.MAS{Raw: parse(t, fmt.Sprintf("http: {listeners: [{binds: [{address: '127.0.0.1:%d'}]}]}", c.masPort(t)))}
			st, err := Probe(context.Background(), Target{Synapse: syn, MAS: mas})
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Synapse) != c.wantSynapse || len(st.MAS) != c.wantMAS {
				t.Fatalf("state %+v, want %d Synapse and %d MAS signs", st, c.wantSynapse, c.wantMAS)
			}
			if got := Healthy(context.Background(), nil, SynapseHealthURLs(syn.Raw)); got != c.wantHealthy {
				t.Fatalf("healthy = %v, want %v", got, c.wantHealthy)
			}
		})
	}
}
