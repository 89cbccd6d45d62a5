package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	ispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sbx-sh/sbx/internal/image"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func imageTable(items []sbx.Image) func(*tabwriter.Writer) {
	return func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "REF\tDIGEST\tSIZE\tSHARED\tCREATED")
		for _, im := range items {
			d := im.Digest
			if len(d) > 19 {
				d = d[:19]
			}
			fmt.Fprintf(tw, "%s\t%s\t%.1fM\t%v\t%s\n", im.Ref, d, float64(im.Size)/(1<<20), im.Shared, ago(im.CreatedAt))
		}
	}
}

func imageCommand(g *globals) *cobra.Command {
	img := &cobra.Command{Use: "image", Short: "Manage images"}
	var pr sbx.PullRequest
	var passStdin bool
	pull := &cobra.Command{
		Use: "pull REF", Short: "Pull an image from an OCI registry", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pr.Ref = args[0]
			if passStdin {
				line, err := bufio.NewReader(os.Stdin).ReadString('\n')
				if err != nil && err != io.EOF {
					return err
				}
				pr.Password = strings.TrimRight(line, "\r\n")
			}
			tty := isTerminal(os.Stderr)
			progress := func(p sbx.PullProgress) {
				if tty && p.Total > 0 {
					const width = 30
					n := int(float64(width) * float64(p.Complete) / float64(p.Total))
					if n > width {
						n = width
					}
					fmt.Fprintf(os.Stderr, "\r[%s%s] %.1f/%.1f MiB", strings.Repeat("=", n), strings.Repeat(" ", width-n), float64(p.Complete)/(1<<20), float64(p.Total)/(1<<20))
				}
			}
			im, err := g.client().PullImage(cmd.Context(), pr, progress)
			if tty {
				fmt.Fprintln(os.Stderr)
			}
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), im, imageTable([]sbx.Image{im}))
		},
	}
	pull.Flags().StringVar(&pr.Username, "username", "", "registry user name")
	pull.Flags().BoolVar(&passStdin, "password-stdin", false, "read the registry password from standard input")
	pull.Flags().BoolVar(&pr.Insecure, "insecure", false, "allow plain HTTP")

	var ref string
	imp := &cobra.Command{
		Use: "import FILE", Short: "Import an OCI-layout or docker-archive tarball ('-' for standard input)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r := io.Reader(os.Stdin)
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				r = f
			}
			items, err := g.client().ImportImage(cmd.Context(), r, ref)
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), items, imageTable(items))
		},
	}
	imp.Flags().StringVar(&ref, "ref", "", "name of the image (for an archive holding one image)")

	ls := listCommand(g, "List images", (*sbx.Client).ListImages, imageTable)
	inspect := inspectCommand(g, "inspect REF", "Show an image as JSON", (*sbx.Client).GetImage)
	rm := &cobra.Command{
		Use: "rm REF...", Short: "Remove images (refused while a sandbox uses one)", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, r := range args {
				if err := g.client().RemoveImage(cmd.Context(), r); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), r)
			}
			return nil
		},
	}
	img.AddCommand(pull, imp, ls, inspect, rm, bootstrapCommand(g))
	return img
}

// bootstrapCommand builds an image on this machine (root, debootstrap or
// busybox-static) and imports it through the API, so it works against a
// daemon that reaches no registry.
func bootstrapCommand(g *globals) *cobra.Command {
	var (
		busybox  bool
		ref      string
		mirror   string
		suite    string
		cacheDir string
		npm      []string
	)
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Build the default image (Debian with Python and Node.js) or --busybox locally and import it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			work, err := os.MkdirTemp("", "sbx-bootstrap-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(work)
			rootfs := filepath.Join(work, "rootfs")
			cfg := image.DefaultConfig
			if busybox {
				if ref == "" {
					ref = "sbx/busybox:latest"
				}
				cfg = image.BusyboxConfig
				err = image.BuildBusyboxRootfs(ctx, rootfs)
			} else {
				if ref == "" {
					ref = "sbx/default:latest"
				}
				err = image.BuildDebian(ctx, rootfs, image.BootstrapOptions{
					Suite: suite, Mirror: mirror, NPM: npm, CacheDir: cacheDir, Log: cmd.ErrOrStderr(),
				})
			}
			if err != nil {
				return err
			}
			return importDir(ctx, g, rootfs, ref, cfg, work, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.BoolVar(&busybox, "busybox", false, "build the tiny busybox image instead (sbx/busybox:latest)")
	f.StringVar(&ref, "ref", "", "name of the image (default sbx/default:latest or sbx/busybox:latest)")
	f.StringVar(&mirror, "mirror", "", "Debian mirror (default: the one this machine's apt uses)")
	f.StringVar(&suite, "suite", "bookworm", "Debian suite")
	f.StringVar(&cacheDir, "cache-dir", "/var/lib/sbx/cache", "where finished root filesystems are cached")
	f.StringSliceVar(&npm, "npm", []string{"tsx", "typescript"}, "npm packages installed globally (skipped when the registry is unreachable)")
	return cmd
}

func importDir(ctx context.Context, g *globals, rootfs, ref string, cfg ispec.ImageConfig, work string, out io.Writer) error {
	tarPath := filepath.Join(work, "image.tar")
	if err := image.WriteRootfsArchive(rootfs, ref, tarPath, cfg); err != nil {
		return err
	}
	f, err := os.Open(tarPath)
	if err != nil {
		return err
	}
	defer f.Close()
	items, err := g.client().ImportImage(ctx, f, ref)
	if err != nil {
		return err
	}
	return g.print(out, items, imageTable(items))
}
