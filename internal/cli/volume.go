package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// volumeFlagHelp documents create's --volume syntax.
const volumeFlagHelp = "mount a volume: NAME:/PATH, NAME/SUBPATH:/PATH (a directory inside the volume, created if missing), " +
	"with :ro for read-only (repeatable)"

// parseVolumeFlag parses NAME[/SUBPATH]:/PATH[:ro|:rw]. Volume names hold
// no '/', so the first '/' starts the subpath.
func parseVolumeFlag(s string) (sbx.VolumeMount, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return sbx.VolumeMount{}, fmt.Errorf("--volume %q: want NAME[/SUBPATH]:/PATH[:ro]", s)
	}
	m := sbx.VolumeMount{MountPath: parts[1]}
	m.Volume, m.Subpath, _ = strings.Cut(parts[0], "/")
	if m.Volume == "" || m.MountPath == "" {
		return sbx.VolumeMount{}, fmt.Errorf("--volume %q: want NAME[/SUBPATH]:/PATH[:ro]", s)
	}
	if len(parts) == 3 {
		switch parts[2] {
		case "ro":
			m.ReadOnly = true
		case "rw":
		default:
			return sbx.VolumeMount{}, fmt.Errorf("--volume %q: the mode must be ro or rw, not %q", s, parts[2])
		}
	}
	return m, nil
}

func parseVolumeFlags(flags []string) ([]sbx.VolumeMount, error) {
	var out []sbx.VolumeMount
	for _, f := range flags {
		m, err := parseVolumeFlag(f)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func volumeTable(items []sbx.Volume) func(*tabwriter.Writer) {
	return func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "ID\tNAME\tSIZE\tSTATE\tUSED BY\tCREATED")
		for _, v := range items {
			used := strings.Join(v.UsedBy, ",")
			if used == "" {
				used = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%dM\t%s\t%s\t%s\n", v.ID, v.Name, v.SizeMB, v.State, used, ago(v.CreatedAt))
		}
	}
}

func volumeCommand(g *globals) *cobra.Command {
	vol := &cobra.Command{Use: "volume", Aliases: []string{"volumes", "vol"}, Short: "Manage persistent volumes",
		Long: "Volumes are named, size-limited filesystems that outlive sandboxes. Mount one at create with\n" +
			"`sbx create --volume NAME:/PATH` (see sbx create --help); several sandboxes may share it."}
	var size int64
	create := &cobra.Command{
		Use: "create NAME", Short: "Create a volume", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := g.client().CreateVolume(cmd.Context(), sbx.CreateVolumeRequest{Name: args[0], SizeMB: size})
			if err != nil {
				return err
			}
			return g.printID(cmd.OutOrStdout(), v, v.ID)
		},
	}
	create.Flags().Int64Var(&size, "size", 1024, "size limit in MiB (writes beyond it fail with ENOSPC)")
	ls := listCommand(g, "List volumes", (*sbx.Client).ListVolumes, volumeTable)
	inspect := inspectCommand(g, "inspect VOLUME", "Show a volume as JSON", (*sbx.Client).GetVolume)
	var force bool
	rm := &cobra.Command{
		Use: "rm VOLUME...", Short: "Delete volumes and their data (refused while a sandbox mounts one, unless --force)",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, v := range args {
				if err := g.client().DeleteVolume(cmd.Context(), v, force); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), v)
			}
			return nil
		},
	}
	rm.Flags().BoolVarP(&force, "force", "f", false, "delete even while sandboxes mount it (running ones keep it until they stop)")
	vol.AddCommand(create, ls, inspect, rm)
	return vol
}
