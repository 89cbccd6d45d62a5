package cli

import (
	"strings"
	"testing"
	"text/tabwriter"
)

func render(t *testing.T, table func(*tabwriter.Writer)) string {
	t.Helper()
	var b strings.Builder
	g := &globals{}
	if err := g.print(&b, nil, table); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
