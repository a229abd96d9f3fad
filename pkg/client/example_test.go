package client_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/streamchat/streamchat/pkg/client"
)

// endpoint is the gateway's websocket endpoint: a local
// `go run ./cmd/gateway`, unless STREAMCHAT_WS_URL names another (the tests
// set it to their own gateway).
func endpoint() string {
	if u := os.Getenv("STREAMCHAT_WS_URL"); u != "" {
		return u
	}
	return "ws://localhost:8080/ws"
}

// Join a room, post a message, and read it back from the room's stream.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := client.Dial(ctx, endpoint()+"?room=example&name=ann", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	for ev := range conn.Events() {
		if ev.Type == "ready" { // history replayed; live from here
			break
		}
	}
	if _, err := conn.Send(ctx, "hello, room"); err != nil {
		log.Fatal(err)
	}
	for ev := range conn.Events() {
		if ev.Type == "message" {
			fmt.Printf("%s: %s\n", ev.From, ev.Text)
			break
		}
	}
	// Output: ann: hello, room
}

// With Reconnect, a dropped connection comes back by itself and resumes
// where it left off: nothing is missed and nothing is seen twice.
func ExampleOptions_reconnect() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := client.Dial(ctx, endpoint()+"?room=example-reconnect&name=bob",
		&client.Options{Reconnect: true, MinBackoff: 10 * time.Millisecond})
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	for ev := range conn.Events() {
		if ev.Type == "ready" {
			break
		}
	}

	conn.Drop()                                                      // as a network failure would
	if _, err := conn.Send(ctx, "sent after the drop"); err != nil { // waits for the reconnect
		log.Fatal(err)
	}
	for ev := range conn.Events() {
		switch ev.Type {
		case "hello":
			fmt.Println("reconnected, resumed:", ev.Resumed)
		case "message":
			fmt.Println("bob:", ev.Text)
			return
		}
	}
	// Output:
	// reconnected, resumed: true
	// bob: sent after the drop
}
