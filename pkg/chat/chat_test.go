package chat

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestParseID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want ID
		ok   bool
	}{
		{"full", "1700000000000-5", ID{1700000000000, 5}, true},
		{"zero", "0-0", ID{}, true},
		{"bare ms", "42", ID{42, 0}, true},
		{"empty", "", ID{}, false},
		{"dollar", "$", ID{}, false},
		{"negative", "-1-0", ID{}, false},
		{"bad seq", "1-x", ID{}, false},
		{"three parts", "1-2-3", ID{}, false},
		{"overflow", "99999999999999999999-0", ID{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseID(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("ParseID(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
			}
			if tt.ok && strings.Contains(tt.in, "-") && got.String() != tt.in {
				t.Fatalf("String() = %q, want %q", got.String(), tt.in)
			}
		})
	}
}

func TestIDCompare(t *testing.T) {
	t.Parallel()
	a, b, c := ID{1, 0}, ID{1, 1}, ID{2, 0}
	if !a.Less(b) || !b.Less(c) || c.Less(a) || a.Compare(a) != 0 {
		t.Fatal("ID ordering is wrong")
	}
}

func TestValidRoom(t *testing.T) {
	t.Parallel()
	tests := []struct {
		room string
		ok   bool
	}{
		{"lobby", true},
		{"a", true},
		{"0-room_x", true},
		{strings.Repeat("a", 64), true},
		{strings.Repeat("a", 65), false},
		{"", false},
		{"-abc", false},
		{"_abc", false},
		{"Lobby", false},
		{"a b", false},
		{"a{b}", false},
		{"café", false},
	}
	for _, tt := range tests {
		if got := ValidRoom(tt.room); got != tt.ok {
			t.Errorf("ValidRoom(%q) = %v, want %v", tt.room, got, tt.ok)
		}
	}
}

func TestNormalizeName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
		code           Code
	}{
		{"plain", "ann", "ann", ""},
		{"trimmed", "  ann \t", "ann", ""},
		{"unicode", "Zoë 🐙", "Zoë 🐙", ""},
		{"32 chars", strings.Repeat("é", 32), strings.Repeat("é", 32), ""},
		{"33 chars", strings.Repeat("é", 33), "", CodeBadName},
		{"empty", "", "", CodeBadName},
		{"spaces", "   ", "", CodeBadName},
		{"control", "a\x00b", "", CodeBadName},
		{"newline inside", "a\nb", "", CodeBadName},
		{"invalid utf8", "a\xffb", "", CodeBadName},
		// Format characters (Cf) render as nothing or reorder the text
		// around them: one in a name lets it pass for another.
		{"right-to-left override", "ann\u202egpj.exe", "", CodeBadName},
		{"left-to-right override", "\u202dann", "", CodeBadName},
		{"right-to-left embedding", "a\u202bnn", "", CodeBadName},
		{"pop directional formatting", "ann\u202c", "", CodeBadName},
		{"first strong isolate", "\u2068ann\u2069", "", CodeBadName},
		{"right-to-left mark", "ann\u200f", "", CodeBadName},
		{"arabic letter mark", "ann\u061c", "", CodeBadName},
		{"zero-width space", "an\u200bn", "", CodeBadName},
		{"zero-width non-joiner", "an\u200cn", "", CodeBadName},
		{"zero-width joiner", "an\u200dn", "", CodeBadName},
		{"word joiner", "an\u2060n", "", CodeBadName},
		{"byte-order mark", "\ufeffann", "", CodeBadName},
		{"soft hyphen", "an\u00adn", "", CodeBadName},
		{"invisible separator", "a\u2063nn", "", CodeBadName},
		{"tag character", "ann\U000e0041", "", CodeBadName},
		{"combining accent is fine", "Zoe\u0301", "Zoe\u0301", ""},
		{"right-to-left script is fine", "\u05e9\u05dc\u05d5\u05dd", "\u05e9\u05dc\u05d5\u05dd", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := NormalizeName(tt.in)
			if tt.code != "" {
				if err == nil || err.Code != tt.code {
					t.Fatalf("NormalizeName(%q) error = %v, want code %s", tt.in, err, tt.code)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("NormalizeName(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestValidClientKey(t *testing.T) {
	t.Parallel()
	for key, ok := range map[string]bool{
		"0123456789abcdef":                     true,
		"3f1c2a9e-7b4d-4e0a-9c8f-5d6e7f8a9b0c": true,
		"AbC_dEf-0123456789":                   true,
		"short":                                false,
		"":                                     false,
		strings.Repeat("a", 64):                true,
		strings.Repeat("a", 65):                false,
		"0123456789abcdef:":                    false,
		"0123456789abcdef{":                    false,
		"0123456789 abcdef":                    false,
		"0123456789abcdeé":                     false,
	} {
		if got := ValidClientKey(key); got != ok {
			t.Errorf("ValidClientKey(%q) = %v, want %v", key, got, ok)
		}
	}
}

func TestDecodeCommand(t *testing.T) {
	t.Parallel()
	const max = 10
	tests := []struct {
		name  string
		in    string
		want  Message
		code  Code
		nonce string
	}{
		{"plain", "hello", Message{Text: "hello"}, "", ""},
		{"plain trimmed", "  hi  ", Message{Text: "hi"}, "", ""},
		{"plain counts code points", "éééééééééé", Message{Text: "éééééééééé"}, "", ""},
		{"plain too long", "01234567890", Message{}, CodeTooLarge, ""},
		{"plain blank", " \n ", Message{}, CodeBadRequest, ""},
		{"plain invalid utf8", "a\xff", Message{}, CodeBadRequest, ""},
		{"json", `{"type":"message","text":"hi","nonce":"n1"}`, Message{Text: "hi", Nonce: "n1"}, "", ""},
		{"json leading space", ` {"type":"message","text":" hi "}`, Message{Text: "hi"}, "", ""},
		{"json not closed", `{"type":"message"`, Message{}, CodeBadRequest, ""},
		{"json trailing garbage", `{"type":"message","text":"a"} x`, Message{}, CodeBadRequest, ""},
		{"json text not string", `{"type":"message","text":5}`, Message{}, CodeBadRequest, ""},
		{"json unknown type", `{"type":"shout","nonce":"n2"}`, Message{}, CodeBadRequest, "n2"},
		{"json missing type", `{"text":"a"}`, Message{}, CodeBadRequest, ""},
		{"json empty text", `{"type":"message","text":"  ","nonce":"n3"}`, Message{}, CodeBadRequest, "n3"},
		{"json too long", `{"type":"message","text":"01234567890","nonce":"n4"}`, Message{}, CodeTooLarge, "n4"},
		{"json long nonce", `{"type":"message","text":"a","nonce":"` + strings.Repeat("n", 65) + `"}`, Message{}, CodeBadRequest, ""},
		{"json array", `[1,2]`, Message{Text: "[1,2]"}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cmd, err := DecodeCommand([]byte(tt.in), max)
			if tt.code != "" {
				if err == nil || err.Code != tt.code || err.Nonce != tt.nonce {
					t.Fatalf("DecodeCommand(%q) error = %+v, want code %s nonce %q", tt.in, err, tt.code, tt.nonce)
				}
				return
			}
			got, _ := cmd.(Message)
			if err != nil || got != tt.want {
				t.Fatalf("DecodeCommand(%q) = %+v, %v; want %+v", tt.in, cmd, err, tt.want)
			}
		})
	}
}

func TestEncodeEvent(t *testing.T) {
	t.Parallel()
	e := Event{ID: ID{1700000000123, 7}, Room: "lobby", Kind: KindMessage, From: "<ann>", Text: `"hi" & <b>`, Nonce: "n"}
	var got map[string]any
	if err := json.Unmarshal(EncodeEvent(e, true), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"type": "message", "id": "1700000000123-7", "room": "lobby", "from": "<ann>",
		"ts": "2023-11-14T22:13:20.123Z", "text": `"hi" & <b>`, "nonce": "n", "replay": true,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	live := string(EncodeEvent(Event{ID: ID{1, 0}, Room: "r", Kind: KindJoin, From: "a"}, false))
	if strings.Contains(live, "replay") || strings.Contains(live, "text") {
		t.Errorf("live join frame carries replay or text: %s", live)
	}
}

func TestEncodeControlFrames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"ready empty", EncodeReady(ID{}, nil, nil), `{"type":"ready","cursor":"0-0","online":[]}`},
		{"ack", EncodeAck("n", ID{5, 1}, false), `{"type":"ack","nonce":"n","id":"5-1"}`},
		{"ack of a duplicate", EncodeAck("n", ID{5, 1}, true), `{"type":"ack","nonce":"n","id":"5-1","duplicate":true}`},
		{"error", EncodeError(&Error{Code: CodeRateLimited, Message: "slow down"}), `{"type":"error","code":"rate_limited","message":"slow down"}`},
		{"hello", EncodeHello(Hello{Room: "r", You: "a", Replica: "x", Limits: Limits{MaxText: 1, MaxFrame: 2, Rate: 5, Burst: 10}}),
			`{"type":"hello","room":"r","you":"a","replica":"x","resumed":false,"limits":{"max_text":1,"max_frame":2,"rate":5,"burst":10}}`},
	}
	for _, tt := range tests {
		if string(tt.got) != tt.want {
			t.Errorf("%s: got %s, want %s", tt.name, tt.got, tt.want)
		}
	}
}

// Attributes become string fields of the event, in key order, and can
// never shadow a fixed field.
func TestEncodeEventAttrs(t *testing.T) {
	t.Parallel()
	attrs, cerr := NewAttrs(map[string]string{"size": "12", "name": `"x".png`})
	if cerr != nil {
		t.Fatal(cerr)
	}
	e := Event{ID: ID{1, 2}, Room: "r", Kind: "file", From: "a", Attrs: attrs}
	got := string(EncodeEvent(e, false))
	want := `{"type":"file","id":"1-2","room":"r","from":"a","ts":"1970-01-01T00:00:00.001Z","name":"\"x\".png","size":"12"}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if m := attrs.Map(); len(m) != 2 || m["name"] != `"x".png` || m["size"] != "12" {
		t.Fatalf("Map = %v", m)
	}
}

func TestCheckAttrs(t *testing.T) {
	t.Parallel()
	many := map[string]string{}
	for i := range MaxAttrs + 1 {
		many[fmt.Sprint("k", i)] = "v"
	}
	tests := []struct {
		name  string
		attrs map[string]string
		ok    bool
	}{
		{"none", nil, true},
		{"fine", map[string]string{"name": "a", "width_px": "3", "k9": ""}, true},
		{"too many", many, false},
		{"fixed field", map[string]string{"from": "x"}, false},
		{"shadow text", map[string]string{"text": "x"}, false},
		{"uppercase", map[string]string{"Name": "x"}, false},
		{"leading digit", map[string]string{"9k": "x"}, false},
		{"empty key", map[string]string{"": "x"}, false},
		{"long key", map[string]string{strings.Repeat("k", MaxAttrKeyLen+1): "x"}, false},
		{"long value", map[string]string{"k": strings.Repeat("v", MaxAttrValueLen+1)}, false},
		{"bad utf8", map[string]string{"k": "\xff"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, err := NewAttrs(tt.attrs)
			if (err == nil) != tt.ok {
				t.Fatalf("NewAttrs = %v, want ok %v", err, tt.ok)
			}
			if err == nil && CheckAttrs(a) != nil {
				t.Fatalf("CheckAttrs refuses what NewAttrs made: %v", CheckAttrs(a))
			}
		})
	}
	// Attributes put together by hand are checked the same way.
	for _, a := range []Attrs{`"from":"x"`, `"k":1`, `"k":"v"}`, `garbage`, `"k":"v","k2":`} {
		if CheckAttrs(a) == nil {
			t.Errorf("CheckAttrs(%s) = nil, want an error", a)
		}
	}
	if CheckAttrs(`"k":"v"`) != nil {
		t.Error(`CheckAttrs("k":"v") refused`)
	}
}

func TestSafeFileName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"cat.png":                 "cat.png",
		"../../etc/passwd":        "passwd",
		`C:\Users\ann\My cat.png`: "My cat.png",
		"":                        "file",
		"..":                      "file",
		".bashrc":                 "bashrc",
		"a\x00b\u202e\u200bc.txt": "abc.txt",
		"  spaced.txt  ":          "spaced.txt",
		"dir/":                    "file",
		strings.Repeat("é", 200):  strings.Repeat("é", 128),
		"fine\xffname.bin":        "finename.bin",
	} {
		if got := SafeFileName(in); got != want {
			t.Errorf("SafeFileName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDecodeConversationCommands(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want Command
		code Code
	}{
		{`{"type":"typing"}`, Typing{}, ""},
		{`{"type":"edit","id":"5-1","text":" new ","nonce":"n"}`, Edit{ID: ID{Ms: 5, Seq: 1}, Text: "new", Nonce: "n"}, ""},
		{`{"type":"edit","id":"5-1","text":"01234567890"}`, nil, CodeTooLarge},
		{`{"type":"edit","id":"0-0","text":"x"}`, nil, CodeBadRequest},
		{`{"type":"delete","id":"5-1"}`, Delete{ID: ID{Ms: 5, Seq: 1}}, ""},
		{`{"type":"delete"}`, nil, CodeBadRequest},
		{`{"type":"react","id":"5-1","emoji":"👍","on":true}`, React{ID: ID{Ms: 5, Seq: 1}, Emoji: "👍", On: true}, ""},
		{`{"type":"react","id":"5-1","emoji":"👍","on":false}`, React{ID: ID{Ms: 5, Seq: 1}, Emoji: "👍"}, ""},
		{`{"type":"react","id":"5-1","emoji":"👍"}`, nil, CodeBadRequest},
		{`{"type":"react","id":"5-1","emoji":"a","on":true}`, nil, CodeBadRequest},
		{`{"type":"read","id":"5-1"}`, Read{ID: ID{Ms: 5, Seq: 1}}, ""},
	} {
		cmd, err := DecodeCommand([]byte(tt.in), 10)
		switch {
		case tt.code != "" && (err == nil || err.Code != tt.code):
			t.Errorf("DecodeCommand(%s) = %+v, %v; want %s", tt.in, cmd, err, tt.code)
		case tt.code == "" && (err != nil || cmd != tt.want):
			t.Errorf("DecodeCommand(%s) = %+v, %v; want %+v", tt.in, cmd, err, tt.want)
		}
	}
}

func TestValidEmoji(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"👍", "👍🏽", "❤️", "🏳️‍🌈", "1️⃣", "#️⃣", "🇫🇷", "✅"} {
		if !ValidEmoji(ok) {
			t.Errorf("ValidEmoji(%q) = false", ok)
		}
	}
	for _, bad := range []string{"", "a", "ok", " 👍", "<3", "👍\"", "\u202e👍", strings.Repeat("👍", 9), "\x00", "\xff"} {
		if ValidEmoji(bad) {
			t.Errorf("ValidEmoji(%q) = true", bad)
		}
	}
}
