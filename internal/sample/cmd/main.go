// Command cmd creates the sample homeserver of `make demo` in a directory
// and prints the path of its masflow settings file.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/sample"
)

func main() {
	dir := flag.String("dir", ".masflow/sample", "where to write the sample's configs")
	users := flag.Int("users", 1000, "users to generate")
	flag.Parse()
	admin, err := pgtest.AdminURL()
	if err == nil {
		var h sample.Homeserver
		if h, err = sample.Create(context.Background(), admin, *dir, sample.Options{Users: *users}); err == nil {
			fmt.Println(h.Settings)
			return
		}
	}
	fmt.Fprintln(os.Stderr, "sample:", err)
	os.Exit(1)
}
