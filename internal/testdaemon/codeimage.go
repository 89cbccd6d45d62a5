package testdaemon

import (
	"context"
	"io"
	"os"
	"path/filepath"

	"github.com/sbx-sh/sbx/internal/image"
)

// CodeImageOptions build the code-run test image: a Debian tree with
// Python and matplotlib, Node.js and tsx, configured like the default image
// (image.DefaultConfig, MPLBACKEND=Agg included). The rootfs is cached in
// /var/lib/sbx/cache, so only the first build takes minutes.
var CodeImageOptions = image.BootstrapOptions{
	Packages: []string{"python3", "python3-matplotlib", "nodejs", "npm"},
	NPM:      []string{"tsx"},
	CacheDir: "/var/lib/sbx/cache",
}

// BuildCodeRootfs builds (or unpacks from the cache) the code-run test
// image's rootfs in dir; log receives the build's progress (nil: none).
func BuildCodeRootfs(ctx context.Context, dir string, log io.Writer) error {
	o := CodeImageOptions
	o.Log = log
	return image.BuildDebian(ctx, dir, o)
}

// ImportCodeImage builds the code-run test image and imports it as ref.
func (d *Daemon) ImportCodeImage(ctx context.Context, ref, work string, log io.Writer) error {
	rootfs := filepath.Join(work, "code-rootfs")
	defer os.RemoveAll(rootfs)
	if err := BuildCodeRootfs(ctx, rootfs, log); err != nil {
		return err
	}
	return d.ImportRootfs(ctx, rootfs, ref, work, image.DefaultConfig)
}
