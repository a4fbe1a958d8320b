package deployments

import (
	"bytes"
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/masflow/masflow/internal/cli"
	"github.com/masflow/masflow/internal/config"
	"github.com/spf13/pflag"
)

// flagSet is what a command line may use: long names and shorthands.
type flagSet struct {
	long, short map[string]bool
}

// check says which arguments of a command line name no flag of the set.
// Values are not checked; every argument starting with "-" is a flag.
func (f flagSet) check(args []string) []string {
	var unknown []string
	for _, a := range args {
		switch {
		case strings.HasPrefix(a, "--"):
			name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
			if !f.long[name] {
				unknown = append(unknown, a)
			}
		case strings.HasPrefix(a, "-") && len(a) > 1:
			if !f.short[a[1:2]] {
				unknown = append(unknown, a)
			}
		}
	}
	return unknown
}

// workerFlags reads the flags worker/main.go declares (pflag calls with a
// literal name, and shorthand for the …P forms), plus one per settings
// key (config.AddSettingsFlags), so that a unit or manifest can be checked
// against the binary it starts without building it.
func workerFlags(t *testing.T) flagSet {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "../worker/main.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	fs := flagSet{long: map[string]bool{}, short: map[string]bool{}}
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || len(call.Args) < 2 {
			return true
		}
		if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "pflag" {
			return true
		}
		name, ok := stringLit(call.Args[0])
		if !ok {
			return true
		}
		fs.long[name] = true
		if strings.HasSuffix(sel.Sel.Name, "P") {
			if short, ok := stringLit(call.Args[1]); ok {
				fs.short[short] = true
			}
		}
		return true
	})
	settings := pflag.NewFlagSet("settings", pflag.ContinueOnError)
	config.AddSettingsFlags(settings)
	settings.VisitAll(func(fl *pflag.Flag) { fs.long[fl.Name] = true })
	if !fs.long["config"] || !fs.short["c"] || !fs.long["host-only"] {
		t.Fatalf("worker/main.go flags not found (parser out of date?): %v %v", fs.long, fs.short)
	}
	return fs
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// usageFlag matches a flag line of pflag's usage: "  -c, --config string".
var usageFlag = regexp.MustCompile(`(?m)^\s+(?:-(\w), )?--([\w.-]+)`)

// starterFlags runs `starter <command> --help` in-process and reads the
// flags from its usage; an unknown command fails the test.
func starterFlags(t *testing.T, command string) flagSet {
	t.Helper()
	if !slices.ContainsFunc(cli.Commands(), func(c cli.Command) bool { return c.Name == command }) {
		t.Fatalf("starter has no command %q", command)
	}
	var stdout, stderr bytes.Buffer
	cli.Main(context.Background(), []string{command, "--help"}, &stdout, &stderr)
	fs := flagSet{long: map[string]bool{}, short: map[string]bool{}}
	for _, m := range usageFlag.FindAllStringSubmatch(stderr.String(), -1) {
		if m[1] != "" {
			fs.short[m[1]] = true
		}
		fs.long[m[2]] = true
	}
	if !fs.long["config"] {
		t.Fatalf("starter %s --help lists no --config:\n%s", command, stderr.String())
	}
	return fs
}

// checkStarterArgs checks a starter command line (without the binary).
func checkStarterArgs(t *testing.T, where string, args []string) {
	t.Helper()
	if len(args) == 0 {
		t.Errorf("%s: starter without a command", where)
		return
	}
	if bad := starterFlags(t, args[0]).check(args[1:]); len(bad) > 0 {
		t.Errorf("%s: starter %s has no flags %q", where, args[0], bad)
	}
}

func TestFlagSetCheck(t *testing.T) {
	w := workerFlags(t)
	if bad := w.check([]string{"-c", "/etc/masflow/masflow.yaml", "--host-only", "--import.batch_size=10"}); len(bad) > 0 {
		t.Errorf("valid worker flags refused: %q", bad)
	}
	if bad := w.check([]string{"--config", "x", "--hostonly", "-x"}); !slices.Equal(bad, []string{"--hostonly", "-x"}) {
		t.Errorf("unknown worker flags found as %q, want --hostonly and -x", bad)
	}
	if bad := starterFlags(t, "migrate").check([]string{"-c", "f", "--yes", "--ack", "a,b", "--dry-run"}); len(bad) > 0 {
		t.Errorf("valid migrate flags refused: %q", bad)
	}
}
