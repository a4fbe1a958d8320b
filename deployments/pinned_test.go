// Package deployments holds no code: its tests hold the deployment files
// beside them (compose, Kubernetes, systemd, the Dockerfile) to what the
// worker and starter actually accept, since no container engine, cluster
// or systemd instance runs where `make test` does.
package deployments

import (
	"fmt"
	"regexp"
	"testing"

	"github.com/distribution/reference"
)

// releaseTag is a tag naming a release: at least major.minor, with an
// optional variant suffix (17.6, 1.30.1, 1.26.8-trixie, 13.1-slim).
var releaseTag = regexp.MustCompile(`^v?\d+\.\d+(\.\d+)?([.-][A-Za-z0-9.-]+)?$`)

// pinned says why an image reference pulled from a registry would not be
// reproducible: it must carry a digest, or a release tag (not latest, not
// a floating major or codename such as 17 or trixie-slim).
func pinned(image string) error {
	ref, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return fmt.Errorf("image %q: %w", image, err)
	}
	if _, ok := ref.(reference.Digested); ok {
		return nil
	}
	tagged, ok := ref.(reference.Tagged)
	switch {
	case !ok:
		return fmt.Errorf("image %q has neither tag nor digest (it means latest): pin a release", image)
	case tagged.Tag() == "latest":
		return fmt.Errorf("image %q: pin a release instead of latest", image)
	case !releaseTag.MatchString(tagged.Tag()):
		return fmt.Errorf("image %q: tag %q moves between releases; pin major.minor or a digest", image, tagged.Tag())
	}
	return nil
}

// localTag says why the tag of an image built here (compose build:) is
// unusable: it must be explicit and not latest, so that a rebuild never
// replaces an image another service or host pulls as latest.
func localTag(image string) error {
	ref, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return fmt.Errorf("image %q: %w", image, err)
	}
	tagged, ok := ref.(reference.Tagged)
	if !ok || tagged.Tag() == "latest" {
		return fmt.Errorf("built image %q: give it an explicit tag other than latest", image)
	}
	return nil
}

func TestPinned(t *testing.T) {
	for _, tc := range []struct {
		image string
		ok    bool
	}{
		{"postgres:17.6", true},
		{"temporalio/server:1.30.1", true},
		{"golang:1.26.8-trixie", true},
		{"debian:13.1-slim", true},
		{"registry.example.org:5000/masflow/masflow:0.4.0", true},
		{"debian@sha256:" + fmt.Sprintf("%064x", 1), true},
		{"postgres", false},
		{"postgres:latest", false},
		{"postgres:17", false},
		{"debian:trixie-slim", false},
		{"Not An Image", false},
	} {
		if err := pinned(tc.image); (err == nil) != tc.ok {
			t.Errorf("pinned(%q) = %v, want ok=%v", tc.image, err, tc.ok)
		}
	}
}
