package archive

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/klauspost/compress/zstd"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/sparse"
)

var errNoSpace = syscall.ENOSPC

// The packed form of a disk image, inside a zstd stream:
//
//	magic "SBXDISK1" | size uint64
//	{ offset uint64 | length uint64 | length bytes }*   data extents, ascending
//	offset = endMark | length 0                          the end
//
// Only data is stored: the image's holes (SEEK_HOLE) and its all-zero
// blocks are left out, and come back as holes. Numbers are big-endian.
const (
	magic     = "SBXDISK1"
	endMark   = ^uint64(0)
	chunkSize = sparse.ChunkSize
	zeroBlock = 64 << 10 // all-zero runs of this size are skipped
)

// PackStats describes a packed image.
type PackStats struct {
	Size int64 // the image's apparent size
	Data int64 // bytes of data stored (before compression)
}

// Pack writes the packed, compressed form of the image file f to w.
func Pack(ctx context.Context, w io.Writer, f *os.File) (PackStats, error) {
	fi, err := f.Stat()
	if err != nil {
		return PackStats{}, err
	}
	size := fi.Size()
	zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(2))
	if err != nil {
		return PackStats{}, err
	}
	bw := bufio.NewWriterSize(zw, 256<<10)
	st := PackStats{Size: size}
	hdr := make([]byte, 16)
	copy(hdr, magic)
	binary.BigEndian.PutUint64(hdr[8:], uint64(size))
	if _, err := bw.Write(hdr); err != nil {
		zw.Close()
		return st, err
	}
	// Extents coalesce consecutive non-zero blocks.
	var extOff int64 = -1
	var ext []byte
	flush := func() error {
		if len(ext) == 0 {
			return nil
		}
		var h [16]byte
		binary.BigEndian.PutUint64(h[:8], uint64(extOff))
		binary.BigEndian.PutUint64(h[8:], uint64(len(ext)))
		if _, err := bw.Write(h[:]); err != nil {
			return err
		}
		_, err := bw.Write(ext)
		st.Data += int64(len(ext))
		ext, extOff = ext[:0], -1
		return err
	}
	err = sparse.NonZero(ctx, f, size, zeroBlock, 1, func(at int64, b []byte) error {
		for i := 0; i < len(b); i += zeroBlock {
			blk := b[i:min(i+zeroBlock, len(b))]
			if extOff >= 0 && extOff+int64(len(ext)) != at+int64(i) {
				if err := flush(); err != nil {
					return err
				}
			}
			if extOff < 0 {
				extOff = at + int64(i)
			}
			ext = append(ext, blk...)
			if len(ext) >= 4*chunkSize {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		zw.Close()
		return st, err
	}
	if err := flush(); err != nil {
		zw.Close()
		return st, err
	}
	var end [16]byte
	binary.BigEndian.PutUint64(end[:8], endMark)
	if _, err := bw.Write(end[:]); err != nil {
		zw.Close()
		return st, err
	}
	if err := bw.Flush(); err != nil {
		zw.Close()
		return st, err
	}
	return st, zw.Close()
}

// Unpack writes the image packed in r into f (a new, empty file), sparse.
// A stream that is cut short, malformed or fails r's own check is an
// error; the caller discards f then.
func Unpack(ctx context.Context, f *os.File, r io.Reader) (PackStats, error) {
	zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(2), zstd.WithDecoderMaxMemory(64<<20))
	if err != nil {
		return PackStats{}, err
	}
	defer zr.Close()
	br := bufio.NewReaderSize(zr, 256<<10)
	var st PackStats
	corrupt := func(what string) error {
		return errdefs.Publicf(errdefs.ErrDataLoss, "the archived disk image is corrupt: %s", what)
	}
	hdr := make([]byte, 16)
	if _, err := io.ReadFull(br, hdr); err != nil {
		return st, readErr(err, corrupt)
	}
	if string(hdr[:8]) != magic {
		return st, corrupt("not an sbx disk archive")
	}
	st.Size = int64(binary.BigEndian.Uint64(hdr[8:]))
	if st.Size < 0 {
		return st, corrupt("bad size")
	}
	if err := f.Truncate(st.Size); err != nil {
		return st, fmt.Errorf("sizing the disk image: %w", diskErr(err))
	}
	buf := make([]byte, chunkSize)
	next := int64(0)
	for {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		if _, err := io.ReadFull(br, hdr); err != nil {
			return st, readErr(err, corrupt)
		}
		off, n := binary.BigEndian.Uint64(hdr[:8]), binary.BigEndian.Uint64(hdr[8:])
		if off == endMark && n == 0 {
			break
		}
		if off > uint64(st.Size) || n > uint64(st.Size)-off || int64(off) < next {
			return st, corrupt("extent out of order or out of bounds")
		}
		pos := int64(off)
		for rem := int64(n); rem > 0; {
			c := int64(len(buf))
			if rem < c {
				c = rem
			}
			if _, err := io.ReadFull(br, buf[:c]); err != nil {
				return st, readErr(err, corrupt)
			}
			if _, err := f.WriteAt(buf[:c], pos); err != nil {
				return st, fmt.Errorf("writing the disk image: %w", diskErr(err))
			}
			pos += c
			rem -= c
		}
		st.Data += int64(n)
		next = pos
	}
	// Whatever follows must be nothing (and reading it to EOF lets r
	// check the object's checksum).
	if n, err := io.Copy(io.Discard, br); err != nil {
		return st, readErr(err, corrupt)
	} else if n > 0 {
		return st, corrupt("trailing data")
	}
	return st, nil
}

func readErr(err error, corrupt func(string) error) error {
	if errdefs.Kind(err) != nil {
		return err
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return corrupt("cut short")
	}
	if errors.Is(err, zstd.ErrMagicMismatch) || errors.Is(err, zstd.ErrCRCMismatch) {
		return corrupt(err.Error())
	}
	return err
}
