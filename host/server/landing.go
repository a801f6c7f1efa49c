package server

import (
	"bytes"
	"html/template"
	"runtime"
	"runtime/debug"

	"github.com/gofiber/fiber/v2"
)

// landingPage is the page at /: what is running and where to look next.
// It is self-contained: no script, no style sheet, no external asset.
var landingPage = template.Must(template.New("landing").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Wingate</title>
<style>
body { font: 15px/1.5 system-ui, sans-serif; margin: 2em auto; max-width: 46em; padding: 0 1em; color: #222; }
table { border-collapse: collapse; } td, th { padding: .2em .8em .2em 0; text-align: left; }
code { font-size: 90%; }
</style>
</head>
<body>
<h1>Wingate</h1>
<p>Version <code>{{.Version}}</code>{{if .Revision}}, revision <code>{{.Revision}}</code>{{end}}, {{.Go}}.</p>
{{if .Public}}<p>This is the public listener: the API, <code>/healthz</code> and <code>/readyz</code>.
The active policies, the live dashboard and the metrics are on the operators' listener
(loopback, the public port + 1 by default: see <code>docs/operations.md</code>).</p>
{{else}}<h2>Active policies</h2>
{{if .Active}}<table>
<tr><th>kind</th><th>policy</th><th>version</th><th>id</th></tr>
{{range .Active}}<tr><td>{{.Kind}}</td><td>{{.Policy}}</td><td><code>{{.Version}}</code></td><td>{{.ID}}</td></tr>
{{end}}</table>{{else}}<p>No policy manager in this server.</p>{{end}}{{end}}
<h2>Look next</h2>
<ul>
{{range .Links}}<li><a href="{{.Href}}">{{.Href}}</a>: {{.Text}}</li>
{{end}}</ul>
<h2>Docs</h2>
<p>In the repository: <code>README.md</code> (running, configuration, tutorial),
<code>docs/architecture.md</code>, <code>docs/design.md</code>, <code>docs/cache.md</code>
(who may see a cached response, HTTP caching, purges).</p>
</body>
</html>
`))

type landingLink struct{ Href, Text string }

type landingActive struct {
	Kind, Policy, Version string
	ID                    int64
}

// buildVersion is the module version and VCS revision the binary was
// built from, as Go records them.
func buildVersion() (version, revision string) {
	version = "(unknown)"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return version, ""
	}
	version = bi.Main.Version
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
			if len(revision) > 12 {
				revision = revision[:12]
			}
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if revision != "" && modified {
		revision += " (modified)"
	}
	return version, revision
}

// landing answers GET /: the version, the active policy versions and
// links to the dashboard, the metrics and the API. It is never stored by
// a cache (no-cache): the active versions change without a restart.
func (s *Server) landing(c *fiber.Ctx) error {
	data := struct {
		Version, Revision, Go string
		Active                []landingActive
		Links                 []landingLink
		// Public: served through the public listener, which shows
		// neither the policies nor the operators' paths.
		Public bool
	}{Go: runtime.Version(), Public: connRole(c) == rolePublic}
	data.Version, data.Revision = buildVersion()
	if s.deps.Rollout != nil && !data.Public {
		for _, a := range s.deps.Rollout.Status().Active {
			data.Active = append(data.Active, landingActive{Kind: a.Kind, Policy: a.Policy, Version: a.Version, ID: a.ID})
		}
	}
	if s.deps.Dashboard != nil && !data.Public {
		data.Links = append(data.Links, landingLink{pathDashboard, "live dashboard: traffic, cache, policies, alerts"})
	}
	if s.deps.Metrics != nil && !data.Public {
		data.Links = append(data.Links, landingLink{pathMetrics, "Prometheus metrics"})
	}
	if s.deps.Alerts != nil && !data.Public {
		data.Links = append(data.Links, landingLink{pathAlerts, "alerts, as JSON"})
	}
	if s.deps.Store != nil {
		data.Links = append(data.Links, landingLink{routeChallenges, "the public challenge catalogue, as JSON"})
	}
	data.Links = append(data.Links, landingLink{"/healthz", "liveness"}, landingLink{"/readyz", "readiness"})
	var b bytes.Buffer
	if err := landingPage.Execute(&b, data); err != nil {
		return err
	}
	c.Response().Header.SetCanonical(headerCacheControl, ccNoCache)
	c.Type("html", "utf-8")
	return c.Send(b.Bytes())
}
