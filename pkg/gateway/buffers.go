package gateway

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
)

// Buffer sizes of a websocket connection. net/http hands a hijacker a 4 KiB
// reader and a fresh 4 KiB writer; chat frames are small, so smaller ones
// save 5 KiB on every idle connection. A frame larger than writeBuffer costs
// one more write(2); the reader reads larger payloads straight through.
const (
	readBuffer  = 1024
	writeBuffer = 2048
)

// smallBuffers makes Hijack return smaller buffers for coder/websocket to
// keep for the life of the connection.
type smallBuffers struct {
	http.ResponseWriter
}

func (s smallBuffers) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(s.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	pending := brw.Reader.Buffered()
	if pending > readBuffer {
		return conn, brw, nil // the client sent ahead; keep what holds it
	}
	var src io.Reader = conn
	if pending > 0 {
		head, _ := brw.Reader.Peek(pending)
		src = io.MultiReader(bytes.NewReader(bytes.Clone(head)), conn)
	}
	r := bufio.NewReaderSize(src, readBuffer)
	if pending > 0 {
		// Pull the bytes already read into the new buffer, where the
		// websocket library looks for them.
		if _, err := r.Peek(pending); err != nil {
			return conn, brw, nil
		}
	}
	return conn, bufio.NewReadWriter(r, bufio.NewWriterSize(conn, writeBuffer)), nil
}
