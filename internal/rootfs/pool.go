package rootfs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// DiskPool keeps ready-made writable-layer images of one size (the
// operator's default disk size), so that a create renames one into place
// instead of running mkfs.ext4 (7–30 ms) on its critical path. Images are
// plain files in one directory, on the same filesystem as the sandboxes, so
// they survive a restart and taking one is a rename. The root directory of
// a pooled image is owned by 0:0 rather than the sandbox's range: nothing
// in a sandbox sees it (Mount chowns the upper and work dirs it creates).
//
// Refills run one mkfs at a time in the background, so they never compete
// with creates for more than one core.
type DiskPool struct {
	dir  string
	size int64
	want int
	log  *slog.Logger

	mu    sync.Mutex
	ready []string
	kick  chan struct{}

	cancel context.CancelFunc
	done   chan struct{}
}

// NewDiskPool starts a pool of want images of size bytes in dir.
func NewDiskPool(dir string, size int64, want int, log *slog.Logger) (*DiskPool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &DiskPool{dir: dir, size: size, want: want, log: log, kick: make(chan struct{}, 1), done: make(chan struct{})}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		path := filepath.Join(dir, e.Name())
		fi, err := e.Info()
		if err != nil || !strings.HasSuffix(e.Name(), ".img") || fi.Size() != size {
			os.Remove(path) // a half-made image or one of another size
			continue
		}
		p.ready = append(p.ready, path)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go p.refill(ctx)
	return p, nil
}

// Size is the image size the pool makes.
func (p *DiskPool) Size() int64 { return p.size }

// Len is the number of ready images.
func (p *DiskPool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ready)
}

// take moves a ready image of size bytes to dst; false if it has none.
func (p *DiskPool) take(size int64, dst string) bool {
	if size != p.size {
		return false
	}
	for {
		p.mu.Lock()
		if len(p.ready) == 0 {
			p.mu.Unlock()
			p.wake()
			return false
		}
		img := p.ready[len(p.ready)-1]
		p.ready = p.ready[:len(p.ready)-1]
		p.mu.Unlock()
		p.wake()
		if err := os.Rename(img, dst); err == nil {
			return true
		}
	}
}

func (p *DiskPool) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

func (p *DiskPool) refill(ctx context.Context) {
	defer close(p.done)
	for {
		for p.Len() < p.want {
			var b [6]byte
			rand.Read(b[:])
			img := filepath.Join(p.dir, hex.EncodeToString(b[:])+".img")
			if err := makeDisk(ctx, img, p.size, "0:0"); err != nil {
				if ctx.Err() != nil {
					return
				}
				p.log.Warn("disk pool refill", "err", err)
				break // try again on the next kick or tick
			}
			p.mu.Lock()
			p.ready = append(p.ready, img)
			p.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
		case <-time.After(30 * time.Second):
		}
	}
}

// Close stops refilling; the ready images stay for the next start.
func (p *DiskPool) Close() {
	p.cancel()
	<-p.done
}
