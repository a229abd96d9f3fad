// Package files decides what an uploaded file is and how it is served:
// the content type comes from the bytes, never from the client; only PNG,
// JPEG, GIF and WebP count as images (never SVG), with their dimensions
// read from the header; everything is served so that nothing uploaded can
// run script in a reader's browser.
package files

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"image"
	_ "image/gif"  // registers the GIF header decoder for image.DecodeConfig
	_ "image/jpeg" // registers JPEG
	_ "image/png"  // registers PNG
	"net/http"
	"net/url"
	"strings"
	"time"

	_ "golang.org/x/image/webp" // registers WebP
)

// Generic is the type of every file that is not one of the image types.
const Generic = "application/octet-stream"

// imageTypes are the content types shown inline.
var imageTypes = map[string]string{
	"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp",
}

// Info is what the server decided about a file's bytes.
type Info struct {
	Mime          string // one of the image types, or Generic
	Width, Height int    // for images
}

// IsImage reports whether the file is shown inline.
func (i Info) IsImage() bool { return i.Mime != Generic }

// Inspect sniffs data (http.DetectContentType) and, for the four image
// types whose header also decodes as that format, reads the dimensions.
// Anything else, including SVG and HTML whatever the client claimed, is
// Generic.
func Inspect(data []byte) Info {
	sniffed := http.DetectContentType(data)
	format, ok := imageTypes[sniffed]
	if !ok {
		return Info{Mime: Generic}
	}
	cfg, got, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil || got != format || cfg.Width <= 0 || cfg.Height <= 0 {
		return Info{Mime: Generic}
	}
	return Info{Mime: sniffed, Width: cfg.Width, Height: cfg.Height}
}

// NewID returns a file id: 128 random bits, URL-safe base64 (22 characters).
func NewID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// ValidID reports whether id could have come from NewID.
func ValidID(id string) bool {
	if len(id) != 22 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(id)
	return err == nil
}

// URL is the path a file is served at.
func URL(room, id string) string { return "/files/" + room + "/" + id }

// Serve writes a stored file: its length, its stored type, an ETag, Range
// support (http.ServeContent), and headers that keep the browser from
// running or sniffing it: nosniff, a sandboxing Content-Security-Policy,
// and Content-Disposition inline only for the image types, attachment with
// the file's name otherwise.
func Serve(w http.ResponseWriter, r *http.Request, id, name, mime string, created time.Time, data []byte, maxAge time.Duration) {
	h := w.Header()
	if _, ok := imageTypes[mime]; !ok {
		mime = Generic
	}
	h.Set("Content-Type", mime)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	h.Set("Cache-Control", fmt.Sprintf("private, max-age=%d", int(maxAge.Seconds())))
	h.Set("ETag", `"`+id+`"`) // a file's bytes never change under its id
	disposition := "attachment"
	if mime != Generic {
		disposition = "inline"
	}
	h.Set("Content-Disposition", disposition+"; filename*=UTF-8''"+url.PathEscape(strings.ReplaceAll(name, `"`, "")))
	http.ServeContent(w, r, "", created, bytes.NewReader(data))
}
