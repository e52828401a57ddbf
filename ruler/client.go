// Package ruler keeps the rule groups of selected PrometheusRule objects in
// sync with the ruler of a long-term store: Mimir's
// (<prefix>/config/v1/rules) or Cortex' (/api/v1/rules) rule configuration
// API, one tenant (X-Scope-OrgID).
//
// Each object is one ruler namespace, "<prefix>/<k8s namespace>/<name>"
// (config.RenderRules). The Syncer only ever touches namespaces under its
// prefix, so several clusters, or a hand-managed rule set, can share one
// tenant. It is level-triggered: it reads the ruler's rule groups, then
// creates, updates and deletes exactly the groups that differ from the
// rendered ones. Between full reads (every resync interval, and after any
// failure) it diffs against the state it last read and wrote, so one edited
// object costs one request, not a read of every group of the tenant.
//
// The package knows the ruler's HTTP API and the rendered RuleSets; it does
// not read Kubernetes or the cluster membership: cmd/ tells the Syncer
// whether this member is the one that syncs.
package ruler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/prometheus/prometheus/model/rulefmt"
	"go.yaml.in/yaml/v3"
)

// API names a ruler configuration API.
type API string

const (
	// APIMimir is Mimir's <prometheus prefix>/config/v1/rules.
	APIMimir API = "mimir"
	// APICortex is Cortex' /api/v1/rules.
	APICortex API = "cortex"
)

// DefaultMimirPrefix is Mimir's default -http.prometheus-http-prefix.
const DefaultMimirPrefix = "/prometheus"

// maxErrorBody bounds how much of a refusal's body is kept as its reason.
const maxErrorBody = 512

// ClientOptions configure a Client.
type ClientOptions struct {
	// URL is the ruler's (or the store's gateway's) base URL, e.g.
	// http://mimir:8080. Required.
	URL string
	// API is APIMimir or APICortex. Required.
	API API
	// MimirPrefix is Mimir's Prometheus HTTP prefix; empty means
	// DefaultMimirPrefix. Only used with APIMimir.
	MimirPrefix string
	// Tenant is sent as X-Scope-OrgID; empty sends none (a store without
	// multi-tenancy).
	Tenant string
	// HTTPClient sends the requests (TLS, authentication, timeout). Nil
	// means a client with a 30 s timeout.
	HTTPClient *http.Client
}

// Client speaks one ruler's rule configuration API.
type Client struct {
	base   *url.URL // .../rules
	tenant string
	hc     *http.Client
}

// NewClient validates opts.
func NewClient(opts ClientOptions) (*Client, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("ruler URL %q: want http(s)://host[:port][/path]", opts.URL)
	}
	path := strings.TrimSuffix(u.Path, "/")
	switch opts.API {
	case APIMimir:
		prefix := opts.MimirPrefix
		if prefix == "" {
			prefix = DefaultMimirPrefix
		}
		path += "/" + strings.Trim(prefix, "/") + "/config/v1/rules"
	case APICortex:
		path += "/api/v1/rules"
	default:
		return nil, fmt.Errorf("ruler API %q: want %q or %q", opts.API, APIMimir, APICortex)
	}
	u.Path, u.RawPath = strings.ReplaceAll(path, "//", "/"), ""
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: defaultTimeout}
	}
	return &Client{base: u, tenant: opts.Tenant, hc: hc}, nil
}

// Endpoint is the rules endpoint requests go to (for logs and the page).
func (c *Client) Endpoint() string { return c.base.String() }

// Error is a response other than success. Code 0 means no response
// (a network error, a timeout).
type Error struct {
	Op   string
	Code int
	Body string
	Err  error
}

func (e *Error) Error() string {
	if e.Code == 0 {
		return fmt.Sprintf("%s: %v", e.Op, e.Err)
	}
	msg := fmt.Sprintf("%s: the ruler answered %d %s", e.Op, e.Code, http.StatusText(e.Code))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Retryable reports whether err may pass by itself: no response, a 5xx, or
// 429. Any other refusal is about the request, which repeating will not
// change.
func Retryable(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return err != nil
	}
	return e.Code == 0 || e.Code == http.StatusTooManyRequests || e.Code >= 500
}

// List returns every rule group of the tenant by ruler namespace. A ruler
// with no group at all answers 404 "no rule groups found" (Mimir and
// Cortex alike): that is an empty map, any other 404 an error.
func (c *Client) List(ctx context.Context) (map[string][]rulefmt.RuleGroup, error) {
	body, code, err := c.do(ctx, http.MethodGet, c.base.String(), nil)
	if err != nil {
		return nil, &Error{Op: "list rule groups", Err: err}
	}
	if code == http.StatusNotFound && strings.Contains(string(body), "no rule groups found") {
		return map[string][]rulefmt.RuleGroup{}, nil
	}
	if code != http.StatusOK {
		return nil, &Error{Op: "list rule groups", Code: code, Body: trimBody(body)}
	}
	out := map[string][]rulefmt.RuleGroup{}
	if err := yaml.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("list rule groups: the ruler's answer is not a YAML map of namespaces to rule groups: %w", err)
	}
	return out, nil
}

// Set creates or replaces group g in namespace ns.
func (c *Client) Set(ctx context.Context, ns string, g rulefmt.RuleGroup) error {
	b, err := yaml.Marshal(g)
	if err != nil {
		return fmt.Errorf("encode rule group %q: %w", g.Name, err)
	}
	return c.expect(ctx, "set rule group "+ns+"/"+g.Name, http.MethodPost, c.path(ns), b, http.StatusAccepted, http.StatusOK)
}

// DeleteGroup removes group name from namespace ns; a missing one is no
// error.
func (c *Client) DeleteGroup(ctx context.Context, ns, name string) error {
	return c.expect(ctx, "delete rule group "+ns+"/"+name, http.MethodDelete, c.path(ns, name), nil,
		http.StatusAccepted, http.StatusOK, http.StatusNoContent, http.StatusNotFound)
}

// DeleteNamespace removes namespace ns with all its groups; a missing one
// is no error.
func (c *Client) DeleteNamespace(ctx context.Context, ns string) error {
	return c.expect(ctx, "delete rule namespace "+ns, http.MethodDelete, c.path(ns), nil,
		http.StatusAccepted, http.StatusOK, http.StatusNoContent, http.StatusNotFound)
}

// path is the URL of a namespace or group. Namespace and group names are
// one path segment each, slashes escaped.
func (c *Client) path(segments ...string) string {
	u := *c.base
	raw := u.EscapedPath()
	for _, s := range segments {
		raw += "/" + url.PathEscape(s)
	}
	u.RawPath = raw
	u.Path, _ = url.PathUnescape(raw)
	return u.String()
}

func (c *Client) expect(ctx context.Context, op, method, target string, body []byte, ok ...int) error {
	resp, code, err := c.do(ctx, method, target, body)
	if err != nil {
		return &Error{Op: op, Err: err}
	}
	for _, want := range ok {
		if code == want {
			return nil
		}
	}
	return &Error{Op: op, Code: code, Body: trimBody(resp)}
}

func (c *Client) do(ctx context.Context, method, target string, body []byte) ([]byte, int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/yaml")
	}
	if c.tenant != "" {
		req.Header.Set("X-Scope-OrgID", c.tenant)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, 0, err
	}
	return b, resp.StatusCode, nil
}

func trimBody(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > maxErrorBody {
		s = strings.ToValidUTF8(s[:maxErrorBody], "") + "..."
	}
	return s
}
