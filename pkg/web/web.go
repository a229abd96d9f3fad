// Package web serves the embedded browser client: plain HTML, CSS and
// JavaScript modules with no build step, loading nothing from other hosts,
// under a strict Content-Security-Policy.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"time"
)

//go:embed static
var static embed.FS

// csp allows only this origin, including websockets to it ('self' covers
// ws: and wss: to the same host and port).
const csp = "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

type asset struct {
	name string
	data []byte
	etag string
}

// Handler serves the client at / and its assets under /static/. Every
// response is revalidated (Cache-Control: no-cache) against a content-hash
// ETag, so a new release replaces old assets at once while unchanged ones
// cost a 304.
func Handler() http.Handler {
	assets := make(map[string]asset)
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		name := path.Base(p)
		assets[name] = asset{name: name, data: data, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		panic("web: embedded assets unreadable: " + err.Error()) // a build defect, not a runtime condition
	}
	serve := func(w http.ResponseWriter, r *http.Request, a asset) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.data))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		serve(w, r, assets["index.html"])
	})
	mux.HandleFunc("GET /static/{file}", func(w http.ResponseWriter, r *http.Request) {
		a, ok := assets[r.PathValue("file")]
		if !ok || a.name == "index.html" {
			http.NotFound(w, r)
			return
		}
		serve(w, r, a)
	})
	return mux
}
