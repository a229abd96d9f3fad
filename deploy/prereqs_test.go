package deploy_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// stubs is a PATH of stand-ins for the programs .ci/prereqs looks at: each
// present program prints what it is asked, apt-get records its calls and
// installs stubs, id and uname say who and where we are.
type stubs struct {
	t   *testing.T
	dir string
	log string
}

func newStubs(t *testing.T, uid int, system string) *stubs {
	t.Helper()
	s := &stubs{t: t, dir: t.TempDir()}
	s.log = filepath.Join(s.dir, "apt.log")
	for _, real := range []string{"bash", "make"} {
		p, err := exec.LookPath(real)
		if err != nil {
			t.Fatalf("%s is needed to run .ci/prereqs: %v", real, err)
		}
		if err := os.Symlink(p, filepath.Join(s.dir, real)); err != nil {
			t.Fatal(err)
		}
	}
	s.script("id", "echo "+strconv.Itoa(uid))
	s.script("uname", "echo "+system)
	s.script("go", "echo go version go1.26")
	s.script("git", "true")
	s.script("nginx", "true")
	s.script("chromium", "true")
	s.redis("7.0.15")
	// apt-get: record the call; an install creates the packages' programs
	// (the package redis-server installs a 7.2).
	s.script("apt-get", `echo "$*" >> `+s.log+`
[ "$1" = install ] || exit 0
for p; do
  case $p in
  -*|install) ;;
  redis-server) printf '#!/bin/sh\necho "Redis server v=7.2.4 sha=0"\n' > `+s.dir+`/redis-server; /bin/chmod +x `+s.dir+`/redis-server ;;
  *) printf '#!/bin/sh\ntrue\n' > `+s.dir+`/$p; /bin/chmod +x `+s.dir+`/$p ;;
  esac
done`)
	return s
}

func (s *stubs) script(name, body string) {
	s.t.Helper()
	if err := os.WriteFile(filepath.Join(s.dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		s.t.Fatal(err)
	}
}

func (s *stubs) redis(version string) {
	s.script("redis-server", `echo "Redis server v=`+version+` sha=00000000:0 malloc=jemalloc-5.3.0 bits=64"`)
}

func (s *stubs) remove(name string) {
	s.t.Helper()
	if err := os.Remove(filepath.Join(s.dir, name)); err != nil {
		s.t.Fatal(err)
	}
}

func (s *stubs) aptCalls() []string {
	b, err := os.ReadFile(s.log)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		s.t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// run runs `make prereqs` from the project's root with only the stubs on
// PATH, as `make test` does first.
func (s *stubs) run(env ...string) (string, error) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.dir, "make"), "--no-print-directory", "prereqs")
	cmd.Dir = ".."
	cmd.Env = append([]string{"PATH=" + s.dir, "CHAT_PREREQS_SBIN=", "HOME=" + s.dir}, env...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		s.t.Fatalf("make prereqs did not finish: %s", out)
	}
	return string(out), err
}

// `make test` starts with make prereqs.
func TestMakeTestStartsWithPrereqs(t *testing.T) {
	out, err := exec.Command("make", "--no-print-directory", "-C", "..", "-n", "test").CombinedOutput()
	if err != nil {
		t.Fatalf("make -n test: %v\n%s", err, out)
	}
	if first := strings.SplitN(string(out), "\n", 2)[0]; !strings.Contains(first, ".ci/prereqs") {
		t.Fatalf("make test does not start with .ci/prereqs:\n%s", out)
	}
	ci, err := os.ReadFile("../.ci/run")
	if err != nil || !strings.Contains(string(ci), ".ci/prereqs") || !strings.Contains(string(ci), "make test") {
		t.Fatalf(".ci/run must run .ci/prereqs and make test: %v\n%s", err, ci)
	}
}

func TestPrereqs(t *testing.T) {
	t.Run("all there", func(t *testing.T) {
		s := newStubs(t, 1000, "Linux")
		if out, err := s.run(); err != nil || out != "" {
			t.Fatalf("%v: %q", err, out)
		}
		if calls := s.aptCalls(); calls != nil {
			t.Fatalf("apt-get called: %q", calls)
		}
	})
	t.Run("root installs what is missing", func(t *testing.T) {
		s := newStubs(t, 0, "Linux")
		s.remove("nginx")
		out, err := s.run()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if calls := s.aptCalls(); strings.Join(calls, "|") != "update -qq|install -y -qq nginx" {
			t.Fatalf("apt-get calls %q", calls)
		}
		if !strings.Contains(out, "nginx (not found): nginx -t checks") || !strings.Contains(out, "installing with apt-get: nginx") {
			t.Fatalf("output does not say what and why:\n%s", out)
		}
	})
	t.Run("root upgrades an old redis-server", func(t *testing.T) {
		s := newStubs(t, 0, "Linux")
		s.redis("6.2.6")
		if out, err := s.run(); err != nil || !strings.Contains(out, "version 6.2.6 is older than 7.0") {
			t.Fatalf("%v\n%s", err, out)
		}
		if calls := s.aptCalls(); len(calls) != 2 || calls[1] != "install -y -qq redis-server" {
			t.Fatalf("apt-get calls %q", calls)
		}
	})
	t.Run("root, but the install does not help", func(t *testing.T) {
		s := newStubs(t, 0, "Linux")
		s.remove("chromium")
		s.script("apt-get", "true") // installs nothing
		out, err := s.run()
		if err == nil || !strings.Contains(out, "still missing after installing") || !strings.Contains(out, "chromium: not found") {
			t.Fatalf("%v\n%s", err, out)
		}
	})
	t.Run("not root: the command, nothing installed", func(t *testing.T) {
		s := newStubs(t, 1000, "Linux")
		s.remove("nginx")
		s.redis("6.0.16")
		out, err := s.run()
		if err == nil || !strings.Contains(out, "sudo apt-get update && sudo apt-get install -y redis-server nginx") {
			t.Fatalf("%v\n%s", err, out)
		}
		if calls := s.aptCalls(); calls != nil {
			t.Fatalf("apt-get called: %q", calls)
		}
	})
	t.Run("CHAT_TEST_NO_INSTALL=1 as root", func(t *testing.T) {
		s := newStubs(t, 0, "Linux")
		s.remove("nginx")
		out, err := s.run("CHAT_TEST_NO_INSTALL=1")
		if err == nil || !strings.Contains(out, "CHAT_TEST_NO_INSTALL=1, so nothing is installed") || !strings.Contains(out, "apt-get install -y nginx") {
			t.Fatalf("%v\n%s", err, out)
		}
		if calls := s.aptCalls(); calls != nil {
			t.Fatalf("apt-get called: %q", calls)
		}
	})
	t.Run("macOS: the Homebrew command", func(t *testing.T) {
		s := newStubs(t, 501, "Darwin")
		s.remove("apt-get")
		s.remove("chromium")
		s.remove("redis-server")
		out, err := s.run()
		if err == nil || !strings.Contains(out, "brew install redis && brew install --cask chromium") || !strings.Contains(out, "CHAT_TEST_CHROMIUM") {
			t.Fatalf("%v\n%s", err, out)
		}
	})
	t.Run("CHAT_TEST_CHROMIUM stands for Chromium", func(t *testing.T) {
		s := newStubs(t, 1000, "Linux")
		s.remove("chromium")
		if out, err := s.run("CHAT_TEST_CHROMIUM=" + filepath.Join(s.dir, "git")); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if out, err := s.run("CHAT_TEST_CHROMIUM=/nonexistent/chrome"); err == nil || !strings.Contains(out, "is not an executable") {
			t.Fatalf("%v\n%s", err, out)
		}
	})
}
