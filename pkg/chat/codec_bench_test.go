package chat

import (
	"strings"
	"testing"
)

func BenchmarkEncodeEvent(b *testing.B) {
	e := Event{ID: ID{1763781234567, 3}, Room: "lobby", Kind: KindMessage, From: "ann", Text: strings.Repeat("x", 64), Nonce: "0123456789abcdef"}
	b.ReportAllocs()
	for b.Loop() {
		_ = EncodeEvent(e, false)
	}
}

func BenchmarkDecodeCommandJSON(b *testing.B) {
	frame := []byte(`{"type":"message","text":"` + strings.Repeat("x", 64) + `","nonce":"0123456789abcdef"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeCommand(frame, 4000); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeCommandPlain(b *testing.B) {
	frame := []byte(strings.Repeat("x", 64))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeCommand(frame, 4000); err != nil {
			b.Fatal(err)
		}
	}
}
