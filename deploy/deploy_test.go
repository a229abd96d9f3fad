// Package deploy_test checks the deployment files against the gateway: the
// compose file, the Dockerfile, the Kubernetes manifests and the load
// balancer's nginx configuration; and the script that sets up what the
// tests need (.ci/prereqs). It is its own module, so the heavy
// parsers it needs never reach the gateway's dependencies.
package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/kelseyhightower/envconfig"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/kustomize/kyaml/yaml"

	"github.com/streamchat/streamchat/pkg/config"
	"github.com/streamchat/streamchat/pkg/metrics"
)

// knownEnv is every CHAT_ variable the gateway reads.
func knownEnv(t *testing.T) map[string]bool {
	t.Helper()
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 1, ' ', 0)
	var c config.Config
	if err := envconfig.Usagef(config.Prefix, &c, tw, "{{range .}}{{usage_key .}}\n{{end}}"); err != nil {
		t.Fatal(err)
	}
	tw.Flush()
	known := map[string]bool{}
	for _, k := range strings.Fields(buf.String()) {
		known[k] = true
	}
	if !known["CHAT_REDIS_URL"] || !known["CHAT_SHUTDOWN_GRACE"] {
		t.Fatalf("unexpected config keys: %v", known)
	}
	return known
}

func defaultGrace(t *testing.T) time.Duration {
	return config.Default().ShutdownGrace
}

func TestCompose(t *testing.T) {
	known := knownEnv(t)
	abs, _ := filepath.Abs("../docker-compose.yml")
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  filepath.Dir(abs),
		ConfigFiles: []types.ConfigFile{{Filename: abs}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) { o.SetProjectName("streamchat", true) })
	if err != nil {
		t.Fatalf("load docker-compose.yml: %v", err)
	}
	redis, gateway, lb := p.Services["redis"], p.Services["gateway"], p.Services["lb"]
	if redis.Name == "" || gateway.Name == "" || lb.Name == "" {
		t.Fatalf("services: %v", p.ServiceNames())
	}
	if !strings.HasPrefix(redis.Image, "redis:7") || !strings.Contains(strings.Join(redis.Command, " "), "--appendonly yes --appendfsync always") || len(redis.Volumes) == 0 {
		t.Errorf("redis: image %q command %v volumes %v", redis.Image, redis.Command, redis.Volumes)
	}
	if redis.HealthCheck == nil || !strings.Contains(strings.Join(redis.HealthCheck.Test, " "), "redis-cli ping") {
		t.Errorf("redis healthcheck: %+v", redis.HealthCheck)
	}
	if gateway.Build == nil || gateway.Deploy == nil || gateway.Deploy.Replicas == nil || *gateway.Deploy.Replicas != 3 {
		t.Errorf("gateway: build %v deploy %+v", gateway.Build, gateway.Deploy)
	}
	if dep, ok := gateway.DependsOn["redis"]; !ok || dep.Condition != types.ServiceConditionHealthy {
		t.Errorf("gateway must start after redis is healthy: %+v", gateway.DependsOn)
	}
	if gateway.HealthCheck == nil || strings.Join(gateway.HealthCheck.Test, " ") != "CMD /gateway healthcheck" {
		t.Errorf("gateway healthcheck: %+v", gateway.HealthCheck)
	}
	grace := defaultGrace(t)
	for k, v := range gateway.Environment {
		if !known[k] {
			t.Errorf("gateway environment %s is not a gateway setting", k)
		}
		if k == "CHAT_SHUTDOWN_GRACE" && v != nil {
			if d, err := time.ParseDuration(*v); err == nil {
				grace = d
			}
		}
	}
	if v := gateway.Environment["CHAT_REDIS_URL"]; v == nil || *v != "redis://redis:6379" {
		t.Errorf("CHAT_REDIS_URL = %v", v)
	}
	if gateway.StopGracePeriod == nil || time.Duration(*gateway.StopGracePeriod) <= grace {
		t.Errorf("stop_grace_period %v must exceed CHAT_SHUTDOWN_GRACE %v", gateway.StopGracePeriod, grace)
	}
	if len(gateway.Ports) != 0 {
		t.Errorf("gateway publishes ports %v; only the load balancer should", gateway.Ports)
	}
	if !strings.HasPrefix(lb.Image, "nginx") || len(lb.Ports) != 1 || lb.Ports[0].Target != 8080 || lb.Ports[0].Published != "8080" {
		t.Errorf("lb: image %q ports %+v", lb.Image, lb.Ports)
	}
	mounted := false
	for _, v := range lb.Volumes {
		mounted = mounted || (strings.HasSuffix(v.Source, "deploy/nginx/nginx.conf") && v.Target == "/etc/nginx/nginx.conf")
	}
	if !mounted {
		t.Errorf("lb does not mount deploy/nginx/nginx.conf: %+v", lb.Volumes)
	}
}

func TestDockerfile(t *testing.T) {
	f, err := os.Open("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("parse Dockerfile: %v", err)
	}
	var froms, runs []string
	var healthcheck, expose, user string
	for _, n := range res.AST.Children {
		args := []string{}
		for a := n.Next; a != nil; a = a.Next {
			args = append(args, a.Value)
		}
		line := strings.Join(args, " ")
		switch strings.ToLower(n.Value) {
		case "from":
			froms = append(froms, line)
		case "run":
			runs = append(runs, line)
		case "healthcheck":
			healthcheck = n.Original
		case "expose":
			expose = line
		case "user":
			user = line
		}
	}
	goMod, _ := os.ReadFile("../go.mod")
	var goVersion string
	for _, l := range strings.Split(string(goMod), "\n") {
		if v, ok := strings.CutPrefix(l, "go "); ok {
			parts := strings.Split(strings.TrimSpace(v), ".")
			goVersion = parts[0] + "." + parts[1]
		}
	}
	if len(froms) != 2 || !strings.HasPrefix(froms[0], "golang:"+goVersion) || !strings.HasSuffix(froms[0], " AS build") {
		t.Errorf("stages %q: want a golang:%s build stage and a runtime stage", froms, goVersion)
	}
	if len(froms) == 2 && froms[1] != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("runtime base %q, want gcr.io/distroless/static-debian12:nonroot", froms[1])
	}
	build := strings.Join(runs, "\n")
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-X main.version=", "./cmd/gateway"} {
		if !strings.Contains(build, want) {
			t.Errorf("build lacks %q: %s", want, build)
		}
	}
	if !strings.Contains(healthcheck, `CMD ["/gateway", "healthcheck"]`) {
		t.Errorf("HEALTHCHECK %q", healthcheck)
	}
	if expose != "8080" || !strings.HasPrefix(user, "nonroot") {
		t.Errorf("EXPOSE %q USER %q", expose, user)
	}
	if ignore, err := os.ReadFile("../.dockerignore"); err != nil || !strings.Contains(string(ignore), ".git") {
		t.Errorf(".dockerignore: %v", err)
	}
}

// render runs kustomize on a directory of deploy/k8s.
func render(t *testing.T, dir string) map[string]*yaml.RNode {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join("k8s", dir))
	if err != nil {
		t.Fatalf("kustomize %s: %v", dir, err)
	}
	out := map[string]*yaml.RNode{}
	for _, r := range resMap.Resources() {
		n, err := yaml.Parse(mustYAML(t, r.AsYAML))
		if err != nil {
			t.Fatal(err)
		}
		out[r.GetKind()+"/"+r.GetName()] = n
	}
	return out
}

func mustYAML(t *testing.T, f func() ([]byte, error)) string {
	t.Helper()
	b, err := f()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func field(t *testing.T, n *yaml.RNode, path ...string) string {
	t.Helper()
	v, err := n.Pipe(yaml.Lookup(path...))
	if err != nil || v == nil {
		return ""
	}
	return strings.TrimSpace(v.MustString())
}

func TestKustomize(t *testing.T) {
	known := knownEnv(t)
	base := render(t, "base")
	for _, want := range []string{"Deployment/streamchat-gateway", "Service/streamchat-gateway", "PodDisruptionBudget/streamchat-gateway",
		"HorizontalPodAutoscaler/streamchat-gateway", "Ingress/streamchat"} {
		if base[want] == nil {
			t.Errorf("base lacks %s", want)
		}
	}
	d := base["Deployment/streamchat-gateway"]
	if d == nil {
		t.FailNow()
	}
	c := "spec.template.spec.containers.[name=gateway]"
	get := func(path string) string { return field(t, d, strings.Split(path, ".")...) }
	checks := map[string]string{
		"spec.replicas":                                              "3",
		c + ".readinessProbe.httpGet.path":                           "/readyz",
		c + ".livenessProbe.httpGet.path":                            "/healthz",
		c + ".ports.[name=http].containerPort":                       "8080",
		c + ".securityContext.readOnlyRootFilesystem":                "true",
		c + ".securityContext.allowPrivilegeEscalation":              "false",
		"spec.template.spec.securityContext.runAsNonRoot":            "true",
		c + ".env.[name=CHAT_REDIS_URL].valueFrom.secretKeyRef.name": "streamchat-redis",
	}
	for path, want := range checks {
		if got := get(path); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
	for _, path := range []string{c + ".resources.requests.cpu", c + ".resources.limits.memory", c + ".lifecycle.preStop"} {
		if get(path) == "" {
			t.Errorf("%s is missing", path)
		}
	}
	grace := defaultGrace(t)
	if v := get(c + ".env.[name=CHAT_SHUTDOWN_GRACE].value"); v != "" {
		grace, _ = time.ParseDuration(v)
	}
	preStop, _ := time.ParseDuration(get(c+".lifecycle.preStop.sleep.seconds") + "s")
	term, _ := time.ParseDuration(get("spec.template.spec.terminationGracePeriodSeconds") + "s")
	if term <= grace+preStop {
		t.Errorf("terminationGracePeriodSeconds %v must exceed CHAT_SHUTDOWN_GRACE %v + preStop %v", term, grace, preStop)
	}
	envs, _ := d.Pipe(yaml.Lookup(strings.Split(c+".env", ".")...))
	names, _ := envs.ElementValues("name")
	for _, n := range names {
		if !known[n] {
			t.Errorf("env %s is not a gateway setting", n)
		}
	}
	if field(t, base["Ingress/streamchat"], "metadata", "annotations", "nginx.ingress.kubernetes.io/proxy-read-timeout") == "" {
		t.Error("ingress has no websocket-friendly read timeout")
	}

	dev := render(t, "overlays/dev")
	if dev["StatefulSet/streamchat-redis"] == nil || dev["Secret/streamchat-redis"] == nil || dev["Deployment/streamchat-gateway"] == nil {
		t.Fatalf("dev overlay resources: %v", keys(dev))
	}
	rs := dev["StatefulSet/streamchat-redis"]
	if args := field(t, rs, "spec", "template", "spec", "containers", "[name=redis]", "args"); !strings.Contains(args, "--appendonly") || !strings.Contains(args, "always") {
		t.Errorf("redis args %q: want an append-only file fsynced on every write", args)
	}
	if field(t, rs, "spec", "volumeClaimTemplates") == "" {
		t.Error("redis StatefulSet has no volume claim")
	}
}

func keys(m map[string]*yaml.RNode) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestNginxConfig(t *testing.T) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, statErr := os.Stat("/usr/sbin/nginx"); statErr != nil {
			t.Fatal("nginx is required to check deploy/nginx/nginx.conf: install it with `apt-get install -y nginx`")
		}
		bin = "/usr/sbin/nginx"
	}
	conf, _ := filepath.Abs("nginx/nginx.conf")
	dir := t.TempDir()
	out, err := exec.Command(bin, "-t", "-c", conf, "-p", dir,
		"-g", "pid "+filepath.Join(dir, "nginx.pid")+"; error_log "+filepath.Join(dir, "error.log")+";").CombinedOutput()
	if err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	text, _ := os.ReadFile(conf)
	for _, want := range []string{"resolver 127.0.0.11", "proxy_set_header Upgrade", "X-Forwarded-For", "proxy_read_timeout 75s"} {
		if !strings.Contains(string(text), want) {
			t.Errorf("nginx.conf lacks %q", want)
		}
	}
}

// The dashboard queries only metrics the gateway exports.
func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile("grafana/streamchat.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}
	reg := prometheus.NewRegistry()
	m := metrics.New(reg, "test")
	// Vectors appear once a label value has been used.
	m.ConnsClosed.WithLabelValues(metrics.ReasonClient)
	m.RedisErrors.WithLabelValues("xread")
	m.Rejected.WithLabelValues("bad_request")
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, f := range families {
		exported[f.GetName()] = true
		if f.GetType() == dto.MetricType_HISTOGRAM {
			exported[f.GetName()+"_bucket"] = true
		}
	}
	names := regexp.MustCompile(`streamchat_[a-z_]+`)
	if len(dash.Panels) == 0 {
		t.Fatal("no panels")
	}
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			for _, name := range names.FindAllString(target.Expr, -1) {
				if !exported[name] {
					t.Errorf("panel %q queries %s, which the gateway does not export", p.Title, name)
				}
			}
		}
	}
}
