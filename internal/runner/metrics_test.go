package runner

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/zap"
)

func TestMetricsEndpointServesRecordedCounters(t *testing.T) {
	m, err := StartMetrics("127.0.0.1:0", zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	m.Handler.WithTags(map[string]string{"entity": "users"}).Counter(MetricRowsRead).Inc(42)
	resp, err := http.Get("http://" + m.Address + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), `masflow_rows_read{entity="users"`) || !strings.Contains(string(body), "} 42") {
		t.Fatalf("metrics lack the counter:\n%s", body)
	}
}
