// Package sparse reads the data of sparse files (the sandboxes' disk
// images) without reading their holes: it walks the data extents the
// filesystem reports (SEEK_DATA/SEEK_HOLE) and, for callers that want it,
// cuts them into fixed-size blocks and hands on only the ones that are not
// all zero. rootfs (layer copies, checksums, prefetch) and archive (packed
// images) both read images this way.
//
// Reads go through the file's ReadAt, so a file may be read by several
// callers at once; the seek calls move the shared file offset.
package sparse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// ChunkSize is how much NonZero reads at a time.
const ChunkSize = 1 << 20

// Extents calls fn for each data extent [off, end) of f below size, in
// order. A file with no data left (only a hole) ends the walk.
func Extents(f *os.File, size int64, fn func(off, end int64) error) error {
	fd := int(f.Fd())
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole remains
		}
		if err != nil {
			return fmt.Errorf("seeking data: %w", err)
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("seeking a hole: %w", err)
		}
		if hole > size {
			hole = size
		}
		if err := fn(data, hole); err != nil {
			return err
		}
		off = hole
	}
	return nil
}

// NonZero reads f's data extents below size in chunks of ChunkSize and
// calls fn with each run of consecutive blocks of block bytes that are not
// all zero, at its offset in f; b is valid only during the call, and a run
// never spans two chunks (chunks are multiples of block). Blocks are
// counted from each extent's start rounded down to a multiple of align
// (1: from the start as reported). A file shorter than its extents said
// (changed while read) is an error.
func NonZero(ctx context.Context, f *os.File, size, block, align int64, fn func(off int64, b []byte) error) error {
	buf := make([]byte, ChunkSize-ChunkSize%block)
	zero := make([]byte, block)
	return Extents(f, size, func(off, end int64) error {
		off -= off % align
		for off < end {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := min(int64(len(buf)), end-off)
			m, err := f.ReadAt(buf[:n], off)
			if err != nil && !(errors.Is(err, io.EOF) && int64(m) == n) {
				return fmt.Errorf("reading the image: %w", err)
			}
			b := buf[:n]
			run := -1
			for i := int64(0); i < n; i += block {
				blk := b[i:min(i+block, n)]
				if bytes.Equal(blk, zero[:len(blk)]) {
					if run >= 0 {
						if err := fn(off+int64(run), b[run:i]); err != nil {
							return err
						}
						run = -1
					}
					continue
				}
				if run < 0 {
					run = int(i)
				}
			}
			if run >= 0 {
				if err := fn(off+int64(run), b[run:]); err != nil {
					return err
				}
			}
			off += n
		}
		return nil
	})
}
