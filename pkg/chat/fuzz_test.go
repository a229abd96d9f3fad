package chat

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// FuzzDecode checks that no client frame can crash the decoder and that what
// it accepts obeys the protocol's rules.
func FuzzDecode(f *testing.F) {
	seeds := []string{
		"hello",
		"",
		" ",
		"{",
		"{}",
		`{"type":"message","text":"hi","nonce":"n"}`,
		`{"type":"message","text":"\u0000"}`,
		`{"type":"typing"}`,
		`{"type":"edit","id":"1-1","text":"x","nonce":"n"}`,
		`{"type":"react","id":"1-1","emoji":"👍🏽","on":true}`,
		`{"type":"delete","id":"1-0"}`,
		`{"type":"read","id":"0-1"}`,
		`{"type":"message","text":["x"]}`,
		`{"type":"message","text":"a","nonce":"` + "0123456789012345678901234567890123456789012345678901234567890123456789" + `"}`,
		"\xff\xfe",
		"ééé",
		"[1]",
		`{"type":"message","text":"\ud800"}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cmd, err := DecodeCommand(data, 100)
		if err != nil {
			if err.Code == "" || err.Message == "" {
				t.Fatalf("error without code or message: %+v", err)
			}
			if !json.Valid(EncodeError(err)) {
				t.Fatalf("error frame is not JSON")
			}
			return
		}
		if utf8.RuneCountInString(cmd.CommandNonce()) > MaxNonceLen {
			t.Fatalf("accepted long nonce %q", cmd.CommandNonce())
		}
		switch c := cmd.(type) {
		case Edit:
			if c.ID.IsZero() || c.Text == "" || utf8.RuneCountInString(c.Text) > 100 {
				t.Fatalf("accepted bad edit %+v", c)
			}
			return
		case React:
			if c.ID.IsZero() || !ValidEmoji(c.Emoji) {
				t.Fatalf("accepted bad reaction %+v", c)
			}
			return
		case Delete, Read, Typing, History, File:
			return
		}
		msg, ok := cmd.(Message)
		if !ok {
			t.Fatalf("decoded %T, want a Message", cmd)
		}
		if !utf8.ValidString(msg.Text) || msg.Text == "" || utf8.RuneCountInString(msg.Text) > 100 {
			t.Fatalf("accepted bad text %q", msg.Text)
		}
		if utf8.RuneCountInString(msg.Nonce) > MaxNonceLen {
			t.Fatalf("accepted long nonce %q", msg.Nonce)
		}
		if !json.Valid(EncodeEvent(Event{Kind: KindMessage, Text: msg.Text, Nonce: msg.Nonce}, false)) {
			t.Fatalf("event frame is not JSON")
		}
	})
}
