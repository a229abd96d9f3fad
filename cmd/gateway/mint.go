package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/streamchat/streamchat/pkg/config"
	"github.com/streamchat/streamchat/pkg/token"
)

// mintMain is "gateway token": it prints an HS256 token signed with
// CHAT_JWT_SECRET, for development and tests.
//
//	gateway token -sub alice -name Alice -rooms 'lobby,team-*' -ttl 1h
func mintMain(cfg config.Config, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gateway token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sub := fs.String("sub", "", "user id (required)")
	name := fs.String("name", "", "display name (default: the user id)")
	rooms := fs.String("rooms", "", "comma-separated room patterns the user may enter, * as wildcard (default: every public room)")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.JWTSecret == "" {
		return errors.New("CHAT_JWT_SECRET is not set: it signs the token (at least 32 bytes)")
	}
	if *sub == "" {
		return errors.New("-sub is required")
	}
	var list []string
	for _, r := range strings.Split(*rooms, ",") {
		if r = strings.TrimSpace(r); r != "" {
			list = append(list, r)
		}
	}
	t, err := token.Mint([]byte(cfg.JWTSecret), *sub, *name, list, *ttl)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, t)
	return err
}
