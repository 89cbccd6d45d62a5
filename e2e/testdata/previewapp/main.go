// Command previewapp is the server the preview e2e tests run inside a
// sandbox: a WebSocket echo, a response that streams, and large bodies
// both ways. It listens on 127.0.0.1 only, so only a proxy that reaches
// the sandbox's own loopback can serve it.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/coder/websocket"
)

func main() {
	addr := "127.0.0.1:" + os.Args[1]
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, b, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte("echo: "), b...)); err != nil {
				return
			}
		}
	})
	// /stream sends its first line at once and the second only after
	// /release is called (or 30 s), so a client sees the first chunk
	// before the response ends only if nothing buffers it.
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(30 * time.Second):
		}
		io.WriteString(w, "second\n")
	})
	mux.HandleFunc("/release", func(w http.ResponseWriter, r *http.Request) {
		select {
		case release <- struct{}{}:
			io.WriteString(w, "released")
		case <-time.After(5 * time.Second):
			http.Error(w, "nobody streaming", http.StatusConflict)
		}
	})
	// /upload answers the size and SHA-256 of the body.
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%d %s", n, hex.EncodeToString(h.Sum(nil)))
	})
	// /download?n=N sends N bytes of a repeating pattern.
	mux.HandleFunc("/download", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		buf := make([]byte, 64<<10)
		for i := range buf {
			buf[i] = byte(i)
		}
		for n > 0 {
			k := min(n, int64(len(buf)))
			if _, err := w.Write(buf[:k]); err != nil {
				return
			}
			n -= k
		}
	})
	// /headers shows what reached the app, so tests can check that no
	// sbx credential did.
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "query=%s\n", r.URL.RawQuery)
		r.Header.Write(w)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "previewapp %s host=%s", r.URL.Path, r.Host)
	})
	log.Fatal(http.ListenAndServe(addr, mux))
}
