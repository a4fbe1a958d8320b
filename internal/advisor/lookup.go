package advisor

import "strings"

// get walks a dotted path through nested YAML mappings.
func get(m map[string]any, path string) (any, bool) {
	var cur any = m
	for _, k := range strings.Split(path, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// isTrue reports whether a path holds the boolean true.
func isTrue(m map[string]any, path string) bool {
	v, _ := get(m, path)
	b, ok := v.(bool)
	return ok && b
}

// present reports whether a path holds a non-null, non-empty value.
func present(m map[string]any, path string) bool {
	v, ok := get(m, path)
	if !ok || v == nil {
		return false
	}
	switch x := v.(type) {
	case map[string]any:
		return len(x) > 0
	case []any:
		return len(x) > 0
	case string:
		return x != ""
	}
	return true
}
