// Command starter is masflow's operator CLI: it checks a homeserver
// before migration (advise) and, with the durable workflow, starts and
// steers migrations. Run it without arguments for the list of commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/masflow/masflow/internal/cli"
	"github.com/masflow/masflow/internal/runner"
)

func main() {
	runner.TuneGC()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
