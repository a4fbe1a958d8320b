package runner

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/opentelemetry"
	"go.uber.org/zap"
)

// Metrics serves Prometheus metrics on /metrics: the SDK's worker,
// workflow and activity metrics, and masflow's own (rows per entity),
// which activities record through the same handler.
type Metrics struct {
	Handler client.MetricsHandler
	Address string
	server  *http.Server
}

// StartMetrics listens on address (host:port; port 0 picks one).
func StartMetrics(address string, log *zap.Logger) (*Metrics, error) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("creating the Prometheus exporter: %w", err)
	}
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	handler := opentelemetry.NewMetricsHandler(opentelemetry.MetricsHandlerOptions{
		Meter:   provider.Meter("masflow"),
		OnError: func(err error) { log.Warn("recording a metric", zap.Error(err)) },
	})
	ln, err := net.Listen("tcp", address)
	if err != nil {
		return nil, fmt.Errorf("worker.metrics_address %s: %w", address, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	m := &Metrics{Handler: handler, Address: ln.Addr().String(), server: &http.Server{Handler: mux}}
	go func() {
		if err := m.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics endpoint stopped", zap.Error(err))
		}
	}()
	return m, nil
}

// Close stops the endpoint.
func (m *Metrics) Close(ctx context.Context) error { return m.server.Shutdown(ctx) }
