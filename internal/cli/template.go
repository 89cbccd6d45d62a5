package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v4"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

func templateTable(items []sbx.Template) func(*tabwriter.Writer) {
	return func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "NAME\tSOURCE\tSTATE\tLAYERS\tDIGEST\tCREATED")
		for _, t := range items {
			d := t.Digest
			if len(d) > 19 {
				d = d[:19]
			}
			state := t.State
			if t.ErrorReason != "" {
				state += ": " + t.ErrorReason
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", t.Name, t.Source, state, len(t.Layers), d, ago(t.CreatedAt))
		}
	}
}

// readSpec reads a build spec from a JSON or YAML file ("-": standard
// input, JSON or YAML), refusing unknown fields.
func readSpec(path string) (*sbx.TemplateSpec, error) {
	var (
		b   []byte
		err error
	)
	if path == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	var sp sbx.TemplateSpec
	ext := strings.ToLower(filepath.Ext(path))
	if ext == ".json" || (ext != ".yaml" && ext != ".yml" && bytes.HasPrefix(bytes.TrimSpace(b), []byte("{"))) {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&sp); err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		return &sp, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&sp); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return &sp, nil
}

func templateCommand(g *globals) *cobra.Command {
	tc := &cobra.Command{Use: "template", Aliases: []string{"templates"}, Short: "Manage templates: named images that sandboxes are created from (sbx create --template NAME)"}
	var (
		req       sbx.CreateTemplateRequest
		file      string
		passStdin bool
		detach    bool
	)
	create := &cobra.Command{
		Use:   "create NAME (--image REF | --file SPEC | --from-sandbox ID)",
		Short: "Create a template from an image, a build spec (JSON or YAML) or a stopped sandbox",
		Long: `Create a template from exactly one of:
  --image REF         an image in a registry (pulled)
  --file SPEC         a build spec, JSON or YAML ('-' for standard input):
                        base: sbx/busybox          # or base_template: NAME
                        steps:
                          - apt: [curl]
                          - run: echo hi > /hello
                          - env: {MODE: prod}
                          - workdir: /app
  --from-sandbox ID   a stopped sandbox's filesystem

The build log is shown as the work goes on (unless --detach); the command
fails when the template ends in error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Name = args[0]
			if file != "" {
				sp, err := readSpec(file)
				if err != nil {
					return err
				}
				req.Spec = sp
			}
			if passStdin {
				line, err := bufio.NewReader(os.Stdin).ReadString('\n')
				if err != nil && err != io.EOF {
					return err
				}
				req.Password = strings.TrimRight(line, "\r\n")
			}
			c := g.client()
			t, err := c.CreateTemplate(cmd.Context(), req)
			if err != nil {
				return err
			}
			if !detach {
				rc, err := c.TemplateBuildLog(cmd.Context(), t.Name, true)
				if err != nil {
					return err
				}
				_, err = io.Copy(cmd.ErrOrStderr(), rc)
				rc.Close()
				if err != nil {
					return err
				}
				if t, err = c.WaitTemplate(cmd.Context(), t.Name); err != nil {
					return err
				}
			}
			if err := g.print(cmd.OutOrStdout(), t, templateTable([]sbx.Template{t})); err != nil {
				return err
			}
			if t.State == sbx.TemplateError {
				return fmt.Errorf("template %s failed: %s", t.Name, t.ErrorReason)
			}
			return nil
		},
	}
	f := create.Flags()
	f.StringVar(&req.Image, "image", "", "make it from this image reference")
	f.StringVarP(&file, "file", "f", "", "make it from this build spec (JSON or YAML; '-' for standard input)")
	f.StringVar(&req.Sandbox, "from-sandbox", "", "make it from this stopped sandbox's filesystem")
	f.StringVar(&req.Username, "username", "", "registry user name (with --image)")
	f.BoolVar(&passStdin, "password-stdin", false, "read the registry password from standard input (with --image)")
	f.BoolVar(&req.Insecure, "insecure", false, "allow a plain-HTTP registry (with --image)")
	f.BoolVarP(&detach, "detach", "d", false, "return at once, without following the build")
	create.MarkFlagsMutuallyExclusive("image", "file", "from-sandbox")
	create.MarkFlagsOneRequired("image", "file", "from-sandbox")

	ls := listCommand(g, "List templates", (*sbx.Client).ListTemplates, templateTable)
	inspect := inspectCommand(g, "inspect NAME", "Show a template as JSON", (*sbx.Client).GetTemplate)
	rm := &cobra.Command{
		Use: "rm NAME...", Short: "Delete templates (refused while a sandbox made from one lives)", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, n := range args {
				if err := g.client().DeleteTemplate(cmd.Context(), n); err != nil {
					return err
				}
			}
			return nil
		},
	}
	var follow bool
	logs := &cobra.Command{
		Use: "logs NAME", Short: "Print a template's build log", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rc, err := g.client().TemplateBuildLog(cmd.Context(), args[0], follow)
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.Copy(cmd.OutOrStdout(), rc)
			return err
		},
	}
	logs.Flags().BoolVarP(&follow, "follow", "f", false, "follow the log until the build ends")
	tc.AddCommand(create, ls, inspect, rm, logs)
	return tc
}
