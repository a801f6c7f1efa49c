// Package deploy holds the deployment files (the Dockerfile at the
// repository's root, compose.yaml, k8s/, monitoring/) and, in its tests,
// their checks against the code: ports, probe paths, variable names,
// drain timings, the user, the entrypoint and the build line.
package deploy

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/app"
)

// runtimeEnv are the variables the files set that are not settings of
// app.Settings, and who reads them.
var runtimeEnv = map[string]string{
	"XDG_CACHE_HOME": "os.UserCacheDir: the policy compilation cache (TestStartupDrill checks the server writes it there)",
	"GOMEMLIMIT":     "the Go runtime's soft memory limit",
}

// knownEnv reports whether the server reads the variable name.
func knownEnv(name string) bool {
	if name == app.ConfigFileEnv || runtimeEnv[name] != "" {
		return true
	}
	for _, s := range app.Settings() {
		if s.Env == name {
			return true
		}
	}
	return false
}

// image is what the Dockerfile makes: the final stage's settings.
type image struct {
	stages     []stage
	final      stage
	env        map[string]string
	entrypoint []string
	user       int
	binary     string // the entrypoint's path in the image
	buildLine  []string
}

func readImage(t *testing.T) image {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var im image
	im.stages = parseDockerfile(t, string(b))
	if len(im.stages) < 2 {
		t.Fatalf("Dockerfile: %d stages, want a build stage and a final one", len(im.stages))
	}
	im.final = im.stages[len(im.stages)-1]
	im.env = im.final.env(t)
	eps := im.final.all("ENTRYPOINT")
	if len(eps) != 1 {
		t.Fatalf("Dockerfile: %d ENTRYPOINTs in the final stage, want 1", len(eps))
	}
	im.entrypoint = execForm(t, eps[0])
	users := im.final.all("USER")
	if len(users) != 1 {
		t.Fatalf("Dockerfile: %d USERs in the final stage, want 1", len(users))
	}
	uid, _, _ := strings.Cut(users[0].Args, ":")
	if im.user, err = strconv.Atoi(uid); err != nil {
		t.Fatalf("Dockerfile: USER %q: want a numeric UID (Kubernetes' runAsNonRoot checks only numbers)", users[0].Args)
	}
	for _, st := range im.stages[:len(im.stages)-1] {
		for _, in := range st.all("RUN") {
			if strings.Contains(in.Args, "go build") {
				if im.buildLine != nil {
					t.Fatalf("Dockerfile:%d: a second go build line", in.Line)
				}
				im.buildLine = shellWords(t, in.Args)
			}
		}
	}
	if im.buildLine == nil {
		t.Fatal("Dockerfile: no RUN with go build in a build stage")
	}
	im.binary = im.entrypoint[0]
	return im
}

// load is app.Load of the environment env, as serve would read it.
func load(t *testing.T, what string, env map[string]string) app.Config {
	t.Helper()
	cfg, err := app.Load("", func(k string) string { return env[k] }, nil)
	if err != nil {
		t.Fatalf("%s: the configuration does not load: %v", what, err)
	}
	return cfg
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// reachable fails when a listen address is on loopback only: inside a
// container nothing else would reach it.
func reachable(t *testing.T, what, addr string) {
	t.Helper()
	host, _, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
		t.Errorf("%s: %s listens on loopback: unreachable from outside the container", what, addr)
	}
}

// ports returns cfg's public and operators' ports.
func ports(t *testing.T, cfg app.Config) (public, ops int) {
	t.Helper()
	opsAddr, on, err := app.OpsAddrOf(cfg)
	if err != nil || !on {
		t.Fatalf("operators' listener: %q, on %v, %v", opsAddr, on, err)
	}
	reachable(t, "public listener", cfg.Addr)
	reachable(t, "operators' listener (Prometheus scrapes it)", opsAddr)
	return port(t, cfg.Addr), port(t, opsAddr)
}

// TestDockerfile: a static build, a distroless final stage run as a
// numeric non-root user, the exposed ports those the configuration in
// the image listens on (both reachable), the policies and the cache
// where the variables say, every variable one the server reads.
func TestDockerfile(t *testing.T) {
	im := readImage(t)
	if !strings.Contains(im.final.From, "distroless/static") && im.final.From != "scratch" {
		t.Errorf("final stage FROM %s: want a distroless static image or scratch", im.final.From)
	}
	if im.user == 0 {
		t.Error("USER is root")
	}
	if got := strings.Join(im.buildLine, " "); !strings.HasPrefix(got, "CGO_ENABLED=0 go build -trimpath -ldflags=-s -w ") || !strings.HasSuffix(got, " ./cmd/wingate") {
		t.Errorf("build line %q: want CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' ... ./cmd/wingate", got)
	}
	generated := false
	for _, in := range im.stages[0].all("RUN") {
		generated = generated || in.Args == "go generate ./policies"
	}
	if !generated {
		t.Error("the build stage does not run go generate ./policies")
	}
	if len(im.entrypoint) != 2 || im.entrypoint[1] != "serve" {
		t.Errorf("ENTRYPOINT %q: want [BINARY serve]", im.entrypoint)
	}
	out := im.buildLine[slices.Index(im.buildLine, "-o")+1]
	if dest, _ := im.final.copyInto(t, out); dest != im.binary {
		t.Errorf("the built %s is copied to %s, the entrypoint runs %s", out, dest, im.binary)
	}
	for k := range im.env {
		if !knownEnv(k) {
			t.Errorf("ENV %s: no setting of the server reads it", k)
		}
	}
	cfg := load(t, "Dockerfile ENV", im.env)
	public, ops := ports(t, cfg)
	var exposed []int
	for _, in := range im.final.all("EXPOSE") {
		for _, p := range strings.Fields(in.Args) {
			n, err := strconv.Atoi(p)
			if err != nil {
				t.Fatalf("EXPOSE %q", in.Args)
			}
			exposed = append(exposed, n)
		}
	}
	slices.Sort(exposed)
	if want := []int{min(public, ops), max(public, ops)}; !slices.Equal(exposed, want) {
		t.Errorf("EXPOSE %v, the configuration listens on %v", exposed, want)
	}
	if dest, _ := im.final.copyInto(t, "/out/policies"); dest != cfg.PolicyDir {
		t.Errorf("policies copied to %s, WINGATE_POLICY_DIR is %s", dest, cfg.PolicyDir)
	}
	// The build stage copies policies.json and every *.wasm: each file
	// policies.json names must be one of those.
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "policies", "policies.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexpAll(`"file":\s*"([^"]+)"`, string(b)) {
		if !strings.HasSuffix(m, ".wasm") || strings.Contains(m, "/") {
			t.Errorf("policies.json names %s, which the image's copy of policies/*.wasm leaves out", m)
		}
	}
	dest, flags := im.final.copyInto(t, "/out/cache")
	if dest != im.env["XDG_CACHE_HOME"] {
		t.Errorf("the cache directory is copied to %s, XDG_CACHE_HOME is %q", dest, im.env["XDG_CACHE_HOME"])
	}
	if own := "--chown=" + strconv.Itoa(im.user) + ":" + strconv.Itoa(im.user); !slices.Contains(flags, own) {
		t.Errorf("the cache directory is copied with %v, want %s (writable by the USER)", flags, own)
	}
}

// TestCompose: three replicas of the image, PostgreSQL and Redis with
// health checks that the replicas wait for, the URLs pointing at them,
// the secrets required from the caller, every variable one the server
// reads, ports mapped to those it listens on, and the stop grace longer
// than the drain and the shutdown.
func TestCompose(t *testing.T) {
	im := readImage(t)
	doc := readYAML(t, filepath.Join(repoRoot(t), "deploy", "compose.yaml"))[0]
	services := at(t, doc, "services").(map[string]any)
	var replicas []string
	for name := range services {
		if strings.HasPrefix(name, "wingate") {
			replicas = append(replicas, name)
		}
	}
	slices.Sort(replicas)
	if len(replicas) != 3 {
		t.Fatalf("compose: Wingate services %v, want 3", replicas)
	}
	for _, dep := range []string{"postgres", "redis"} {
		if len(list(t, services, dep, "healthcheck", "test")) == 0 {
			t.Errorf("compose: %s has no health check", dep)
		}
	}
	secrets := map[string]string{
		"WINGATE_JWT_SECRET":  "compose-test-jwt-secret-0123456789abcdef",
		"WINGATE_ADMIN_TOKEN": "compose-test-admin-token-0123456789abcdef",
	}
	imageName := ""
	for _, name := range replicas {
		svc := services[name]
		if img := str(t, svc, "image"); imageName == "" {
			imageName = img
		} else if img != imageName {
			t.Errorf("compose %s: image %s, others %s", name, img, imageName)
		}
		if ctx := str(t, svc, "build", "context"); filepath.Clean(filepath.Join(repoRoot(t), "deploy", ctx)) != repoRoot(t) {
			t.Errorf("compose %s: build context %s is not the repository", name, ctx)
		}
		env := map[string]string{}
		for k, v := range im.env {
			env[k] = v
		}
		for k, v := range at(t, svc, "environment").(map[string]any) {
			if !knownEnv(k) {
				t.Errorf("compose %s: %s: no setting of the server reads it", name, k)
			}
			env[k] = composeEnvValue(t, v.(string), secrets)
			if _, secret := secrets[k]; secret && env[k] != secrets[k] {
				t.Errorf("compose %s: %s is written in the file; take it from the environment", name, k)
			}
		}
		for k := range secrets {
			if env[k] == "" {
				t.Errorf("compose %s: %s unset: each replica would sign with its own secret", name, k)
			}
		}
		cfg := load(t, "compose "+name, env)
		public, ops := ports(t, cfg)
		for _, dep := range []struct{ url, service string }{{cfg.DatabaseURL, "postgres"}, {cfg.RedisURL, "redis"}} {
			if !strings.Contains(dep.url, "@"+dep.service+":") && !strings.Contains(dep.url, "//"+dep.service+":") {
				t.Errorf("compose %s: URL %q does not name the %s service", name, dep.url, dep.service)
			}
			if c := str(t, svc, "depends_on", dep.service, "condition"); c != "service_healthy" {
				t.Errorf("compose %s: waits for %s to be %s, want service_healthy", name, dep.service, c)
			}
		}
		var targets []int
		for _, p := range list(t, svc, "ports") {
			f := strings.Split(p.(string), ":")
			n, _ := strconv.Atoi(f[len(f)-1])
			targets = append(targets, n)
			if len(f) != 3 || f[0] != "127.0.0.1" {
				t.Errorf("compose %s: port %q: publish on the host's loopback only", name, p)
			}
		}
		slices.Sort(targets)
		if want := []int{min(public, ops), max(public, ops)}; !slices.Equal(targets, want) {
			t.Errorf("compose %s: container ports %v, it listens on %v", name, targets, want)
		}
		hc := list(t, svc, "healthcheck", "test")
		if len(hc) < 3 || hc[0] != "CMD" || hc[1] != im.binary || hc[2] != "health" {
			t.Errorf("compose %s: health check %v: want [CMD %s health ...]", name, hc, im.binary)
		}
		grace, err := time.ParseDuration(str(t, svc, "stop_grace_period"))
		if err != nil {
			t.Fatal(err)
		}
		if grace <= cfg.DrainDelay+cfg.ShutdownTimeout {
			t.Errorf("compose %s: stop_grace_period %s is not above drain delay %s + shutdown timeout %s", name, grace, cfg.DrainDelay, cfg.ShutdownTimeout)
		}
	}
}

// k8s is the Kubernetes manifests, by kind.
type k8s map[string]map[string]any

func readK8s(t *testing.T) k8s {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "deploy", "k8s")
	kust := readYAML(t, filepath.Join(dir, "kustomization.yaml"))[0]
	m := k8s{}
	files := []string{"secret.example.yaml"}
	for _, r := range list(t, kust, "resources") {
		files = append(files, r.(string))
	}
	for _, f := range files {
		for _, doc := range readYAML(t, filepath.Join(dir, f)) {
			kind := str(t, doc, "kind")
			if m[kind] != nil {
				t.Fatalf("k8s: two %s", kind)
			}
			m[kind] = doc
		}
	}
	return m
}

// container returns the Deployment's one container and its environment
// over the image's: literal values as they are, secret references as
// test values of the right shape.
func (m k8s) container(t *testing.T, im image) (map[string]any, map[string]string) {
	t.Helper()
	cs := list(t, m["Deployment"], "spec", "template", "spec", "containers")
	if len(cs) != 1 {
		t.Fatalf("k8s: %d containers, want 1", len(cs))
	}
	c := cs[0].(map[string]any)
	env := map[string]string{}
	for k, v := range im.env {
		env[k] = v
	}
	secret := at(t, m["Secret"], "stringData").(map[string]any)
	for _, e := range list(t, c, "env") {
		name := str(t, e, "name")
		if !knownEnv(name) {
			t.Errorf("k8s env %s: no setting of the server reads it", name)
		}
		if v, ok := e.(map[string]any)["value"]; ok {
			env[name] = v.(string)
			continue
		}
		key := str(t, e, "valueFrom", "secretKeyRef", "key")
		if str(t, e, "valueFrom", "secretKeyRef", "name") != str(t, m["Secret"], "metadata", "name") {
			t.Errorf("k8s env %s: secret %v is not the example's", name, at(t, e, "valueFrom"))
		}
		if _, ok := secret[key]; !ok {
			t.Errorf("k8s env %s: key %s is not in secret.example.yaml", name, key)
		}
		switch name {
		case "DATABASE_URL", "REDIS_URL":
			env[name] = secret[key].(string)
		default:
			env[name] = "k8s-test-secret-value-0123456789abcdef"
		}
	}
	return c, env
}

// TestKubernetes: three replicas run as the image's non-root user with a
// read-only root and the cache on an emptyDir; the probes are the public
// listener's /readyz and /healthz; Prometheus is pointed at the
// operators' /metrics; the Service and the network policy open the
// public port to all and the operators' one to monitoring only; and the
// drain timings nest: the readiness probe notices within the drain
// delay, and the grace period covers the drain delay and the shutdown
// timeout with room to close.
func TestKubernetes(t *testing.T) {
	im := readImage(t)
	m := readK8s(t)
	for _, kind := range []string{"Deployment", "Service", "NetworkPolicy", "PodDisruptionBudget", "Secret"} {
		if m[kind] == nil {
			t.Fatalf("k8s: no %s", kind)
		}
	}
	dep := m["Deployment"]
	if n := num(t, dep, "spec", "replicas"); n != 3 {
		t.Errorf("k8s: %d replicas, want 3", n)
	}
	pod := at(t, dep, "spec", "template", "spec")
	if at(t, pod, "securityContext", "runAsNonRoot") != true {
		t.Error("k8s: runAsNonRoot is not true")
	}
	if uid := num(t, pod, "securityContext", "runAsUser"); uid != im.user || uid == 0 {
		t.Errorf("k8s: runAsUser %d, the image's USER %d", uid, im.user)
	}
	c, env := m.container(t, im)
	if str(t, c, "image") != str(t, readYAML(t, filepath.Join(repoRoot(t), "deploy", "compose.yaml"))[0], "services", "wingate-1", "image") {
		t.Error("k8s and compose run different images")
	}
	if at(t, c, "securityContext", "readOnlyRootFilesystem") != true || at(t, c, "securityContext", "allowPrivilegeEscalation") != false {
		t.Error("k8s: want readOnlyRootFilesystem true and allowPrivilegeEscalation false")
	}
	// With a read-only root, the one path the server writes (the cache)
	// must be an emptyDir mount.
	mounts := map[string]string{}
	for _, vm := range list(t, c, "volumeMounts") {
		mounts[str(t, vm, "mountPath")] = str(t, vm, "name")
	}
	vol := mounts[env["XDG_CACHE_HOME"]]
	emptyDir := false
	for _, v := range list(t, pod, "volumes") {
		if str(t, v, "name") == vol {
			_, emptyDir = v.(map[string]any)["emptyDir"]
		}
	}
	if !emptyDir {
		t.Errorf("k8s: XDG_CACHE_HOME %q is not an emptyDir mount (%v)", env["XDG_CACHE_HOME"], mounts)
	}
	cfg := load(t, "k8s", env)
	public, ops := ports(t, cfg)
	named := map[string]int{}
	for _, p := range list(t, c, "ports") {
		named[str(t, p, "name")] = num(t, p, "containerPort")
	}
	if named["http"] != public || named["ops"] != ops || len(named) != 2 {
		t.Errorf("k8s container ports %v; the configuration listens on http %d, ops %d", named, public, ops)
	}
	probe := func(which, path string) (period, failures int) {
		p := at(t, c, which)
		if got := str(t, p, "httpGet", "path"); got != path {
			t.Errorf("k8s %s: path %s, want %s", which, got, path)
		}
		if pt := str(t, p, "httpGet", "port"); pt != "http" && pt != strconv.Itoa(public) {
			t.Errorf("k8s %s: port %s, want the public listener's (http, %d)", which, pt, public)
		}
		return num(t, p, "periodSeconds"), num(t, p, "failureThreshold")
	}
	rp, rf := probe("readinessProbe", "/readyz")
	probe("livenessProbe", "/healthz")
	probe("startupProbe", "/healthz")
	ann := at(t, dep, "spec", "template", "metadata", "annotations")
	if str(t, ann, "prometheus.io/port") != strconv.Itoa(ops) || str(t, ann, "prometheus.io/path") != "/metrics" {
		t.Errorf("k8s: Prometheus annotations %v; the operators' listener is on %d", ann, ops)
	}
	// Drain: the readiness probe sees /readyz fail within the drain
	// delay; the grace period covers the drain delay, the shutdown
	// timeout and a preStop hook if any, with 5 s to close the services.
	noticed := time.Duration(rp*rf) * time.Second
	if noticed > cfg.DrainDelay {
		t.Errorf("k8s: the readiness probe notices after %s (periodSeconds %d x failureThreshold %d), after the drain delay %s", noticed, rp, rf, cfg.DrainDelay)
	}
	if _, ok := c["lifecycle"]; ok {
		t.Error("k8s: a lifecycle hook; the server's own drain delay replaces a preStop sleep (the image has no shell)")
	}
	grace := time.Duration(num(t, pod, "terminationGracePeriodSeconds")) * time.Second
	if grace < cfg.DrainDelay+cfg.ShutdownTimeout+5*time.Second {
		t.Errorf("k8s: terminationGracePeriodSeconds %s < drain delay %s + shutdown timeout %s + 5 s", grace, cfg.DrainDelay, cfg.ShutdownTimeout)
	}
	limit := memBytes(t, str(t, c, "resources", "limits", "memory"))
	if gm := memBytes(t, env["GOMEMLIMIT"]); gm >= limit {
		t.Errorf("k8s: GOMEMLIMIT %d is not below the memory limit %d", gm, limit)
	}
	// The Service: the public port only.
	sp := list(t, m["Service"], "spec", "ports")
	if len(sp) != 1 || str(t, sp[0], "targetPort") != "http" {
		t.Errorf("k8s Service ports %v: want the public listener (http) alone", sp)
	}
	// The network policy: public from anywhere, operators' only with a
	// from clause.
	for _, rule := range list(t, m["NetworkPolicy"], "spec", "ingress") {
		for _, p := range list(t, rule, "ports") {
			n := num(t, p, "port")
			_, from := rule.(map[string]any)["from"]
			switch {
			case n == ops && !from:
				t.Errorf("k8s NetworkPolicy opens the operators' port %d to everyone", ops)
			case n != ops && n != public:
				t.Errorf("k8s NetworkPolicy opens port %d, on which nothing listens", n)
			}
		}
	}
	if str(t, m["PodDisruptionBudget"], "spec", "selector", "matchLabels", "app.kubernetes.io/name") != str(t, dep, "spec", "selector", "matchLabels", "app.kubernetes.io/name") {
		t.Error("k8s: the PodDisruptionBudget selects other pods")
	}
	// The example secret must not start a server: the admin token
	// placeholder is refused.
	env["WINGATE_ADMIN_TOKEN"] = at(t, m["Secret"], "stringData", "admin-token").(string)
	if _, err := app.Load("", func(k string) string { return env[k] }, nil); err == nil {
		t.Error("k8s: the example secret's admin token is accepted; a placeholder must be refused")
	}
}
