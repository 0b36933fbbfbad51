// Package workflow picks the workflow a file runs through, from the `rule`
// header, the `user_agent` header, or the default.
package workflow

import (
	"errors"
	"slices"
	"strings"

	"github.com/scangate/scangate/pkg/config"
)

// ErrUnknownRule is returned when `rule` names no configured workflow.
var ErrUnknownRule = errors.New("Unknown rule.")

// Set is the configured workflows, looked up by name and user agent.
type Set struct {
	list []config.Workflow
	def  int
}

// NewSet indexes validated workflows (config.Validate marks a default).
func NewSet(ws []config.Workflow) *Set {
	s := &Set{list: ws}
	for i, w := range ws {
		if w.Default {
			s.def = i
		}
	}
	return s
}

// Get returns the workflow called name.
func (s *Set) Get(name string) (*config.Workflow, bool) {
	for i := range s.list {
		if s.list[i].Name == name {
			return &s.list[i], true
		}
	}
	return nil, false
}

// Select resolves a request's workflow. rule wins over userAgent. A rule
// may list several comma-separated names; every name must exist and the
// first one runs.
func (s *Set) Select(rule, userAgent string) (*config.Workflow, error) {
	if strings.TrimSpace(rule) != "" {
		var first *config.Workflow
		for _, name := range strings.Split(rule, ",") {
			w, ok := s.Get(strings.TrimSpace(name))
			if !ok {
				return nil, ErrUnknownRule
			}
			if first == nil {
				first = w
			}
		}
		return first, nil
	}
	if userAgent != "" {
		for i := range s.list {
			if slices.Contains(s.list[i].UserAgents, userAgent) {
				return &s.list[i], nil
			}
		}
	}
	return &s.list[s.def], nil
}

// Available lists the workflows a client with userAgent may use: those
// mapped to it and those mapped to no agent in particular. An empty
// userAgent sees all.
func (s *Set) Available(userAgent string) []config.Workflow {
	var out []config.Workflow
	for _, w := range s.list {
		if userAgent == "" || len(w.UserAgents) == 0 || slices.Contains(w.UserAgents, userAgent) {
			out = append(out, w)
		}
	}
	return out
}
