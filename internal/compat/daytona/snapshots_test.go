package daytona

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/template"
)

func TestSpecOfDockerfile(t *testing.T) {
	// As the SDK's Image builder writes it.
	df := "FROM sbx/busybox:latest\n" +
		"RUN echo built > /built\n" +
		"RUN \"sh\" \"-c\" \"echo again\"\n" +
		"RUN [\"sh\", \"-c\", \"echo it's json\"]\n" +
		"ENV MODE='a b'\n" +
		"ENV PLAIN=x\n" +
		"WORKDIR /srv\n" +
		"USER sbx\n" +
		"# a comment\n" +
		"RUN apt-get update && \\\n    apt-get install -y jq\n" +
		"ENTRYPOINT [\"/bin/sh\", \"-c\"]\n" +
		"CMD [\"sleep 1\"]\n"
	got, err := specOfDockerfile(df)
	if err != nil {
		t.Fatal(err)
	}
	want := template.Spec{Base: "sbx/busybox:latest", Steps: []template.Step{
		{Run: "echo built > /built"},
		{Run: `"sh" "-c" "echo again"`},
		{Run: `'sh' '-c' 'echo it'\''s json'`},
		{Env: map[string]string{"MODE": "a b"}},
		{Env: map[string]string{"PLAIN": "x"}},
		{Workdir: "/srv"},
		{User: "sbx"},
		{Run: "apt-get update && \n    apt-get install -y jq"},
		{Entrypoint: []string{"/bin/sh", "-c"}},
		{Cmd: []string{"sleep 1"}},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("spec (-want +got):\n%s", diff)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("the translated spec is invalid: %v", err)
	}
	for name, bad := range map[string]string{
		"copy":       "FROM a\nCOPY x /x\n",
		"no from":    "RUN true\n",
		"two froms":  "FROM a\nFROM b\n",
		"from stage": "FROM a AS b\n",
	} {
		if _, err := specOfDockerfile(bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: %v, want invalid argument", name, err)
		}
	}
}
