package image

import (
	"io"
	"sync"
)

var progressMu sync.Mutex

func (l *progressLayer) Compressed() (io.ReadCloser, error) {
	rc, err := l.Layer.Compressed()
	if err != nil {
		return nil, err
	}
	return &countingReader{ReadCloser: rc, l: l}, nil
}

type countingReader struct {
	io.ReadCloser
	l *progressLayer
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	if n > 0 {
		progressMu.Lock()
		c.l.img.complete += int64(n)
		done := c.l.img.complete
		progressMu.Unlock()
		d, _ := c.l.Digest()
		c.l.img.report(Progress{Layer: d.String(), Complete: done, Total: c.l.total})
	}
	return n, err
}
