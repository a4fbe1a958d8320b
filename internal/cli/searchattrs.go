package cli

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/masflow/masflow/workflows"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
)

// namespace is the Temporal namespace the client settings name (the
// environment or profile), "default" when none.
func namespace() string {
	if opts, err := envconfig.LoadDefaultClientOptions(); err == nil && opts.Namespace != "" {
		return opts.Namespace
	}
	return "default"
}

// searchAttributeTypes maps the CLI's type names to the API's.
var searchAttributeTypes = map[enums.IndexedValueType]string{
	enums.INDEXED_VALUE_TYPE_KEYWORD: "Keyword",
	enums.INDEXED_VALUE_TYPE_BOOL:    "Bool",
	enums.INDEXED_VALUE_TYPE_INT:     "Int",
}

// ensureSearchAttributes checks that the namespace has masflow's search
// attributes: without them every workflow task fails (BAD_SEARCH_ATTRIBUTES)
// and the migration never starts, with nothing but a worker log line to
// say so. Missing ones are created when register is set; otherwise the
// error prints the commands that create them.
func ensureSearchAttributes(ctx context.Context, c client.Client, namespace string, register bool) error {
	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return fmt.Errorf("listing the search attributes of namespace %s: %w", namespace, err)
	}
	missing := map[string]enums.IndexedValueType{}
	for sa := range workflows.SearchAttributeKeys().GetUntypedValues() {
		name := sa.GetName()
		if _, ok := resp.GetCustomAttributes()[name]; !ok {
			missing[name] = sa.GetValueType()
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if register {
		_, err := c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
			Namespace: namespace, SearchAttributes: missing})
		if err != nil {
			return fmt.Errorf("registering search attributes on namespace %s: %w", namespace, err)
		}
		return nil
	}
	var cmds []string
	for name, typ := range missing {
		cmds = append(cmds, fmt.Sprintf("temporal operator search-attribute create --namespace %s --name %s --type %s",
			namespace, name, searchAttributeTypes[typ]))
	}
	slices.Sort(cmds)
	return fmt.Errorf("namespace %s lacks masflow's search attributes, so no migration could start; create them "+
		"(or run again with --register-search-attributes):\n  %s", namespace, strings.Join(cmds, "\n  "))
}
