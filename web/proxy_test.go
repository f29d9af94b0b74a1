package web

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/labd/labd/grader"
	"github.com/labd/labd/grader/progress"
	"github.com/labd/labd/web/terminal"
)

func TestParseTrustedProxy(t *testing.T) {
	tests := []struct {
		in, want string // want "": an error naming in
	}{
		{"127.0.0.1", "127.0.0.1/32"},
		{" 10.0.0.5 ", "10.0.0.5/32"},
		{"::1", "::1/128"},
		{"::ffff:10.0.0.1", "10.0.0.1/32"},
		{"10.0.0.0/8", "10.0.0.0/8"},
		{"10.1.2.3/8", "10.0.0.0/8"},
		{"fd00::/8", "fd00::/8"},
		{"", ""},
		{"localhost", ""},
		{"proxy.example.com", ""},
		{"10.0.0.0/33", ""},
		{"10.0.0.1:443", ""},
		{"fe80::1%eth0", ""},
		{"10.0.0.0/8,10.1.0.0/16", ""},
	}
	for _, tt := range tests {
		p, err := ParseTrustedProxy(tt.in)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("ParseTrustedProxy(%q) = %v, want an error", tt.in, p)
		case tt.want == "" && (!strings.Contains(err.Error(), fmt.Sprintf("%q", strings.TrimSpace(tt.in))) || !strings.Contains(err.Error(), "CIDR")):
			t.Errorf("ParseTrustedProxy(%q) error %q: want it to name the value and say what is expected", tt.in, err)
		case tt.want != "" && (err != nil || p.String() != tt.want):
			t.Errorf("ParseTrustedProxy(%q) = %v, %v; want %s", tt.in, p, err, tt.want)
		}
	}
}

func prefixes(ps ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

// TestClientOf: forwarded headers count only from a trusted peer, and
// then only the part the trusted proxies wrote.
func TestClientOf(t *testing.T) {
	s := &server{opts: Options{TrustedProxies: prefixes("10.0.0.0/8", "127.0.0.1/32")}}
	tests := []struct {
		name      string
		peer      string
		tls       bool
		proto     []string
		forwarded []string
		wantHTTPS bool
		wantAddr  string
	}{
		{"direct http", "198.51.100.7:5000", false, nil, nil, false, "198.51.100.7"},
		{"direct TLS", "198.51.100.7:5000", true, nil, nil, true, "198.51.100.7"},
		{"untrusted peer claims https", "198.51.100.7:5000", false, []string{"https"}, []string{"203.0.113.9"}, false, "198.51.100.7"},
		{"untrusted peer claims http over TLS", "198.51.100.7:5000", true, []string{"http"}, nil, true, "198.51.100.7"},
		{"trusted proxy, https", "10.0.0.1:5000", false, []string{"https"}, []string{"203.0.113.9"}, true, "203.0.113.9"},
		{"trusted proxy, HTTPS", "10.0.0.1:5000", false, []string{"HTTPS"}, nil, true, "10.0.0.1"},
		{"trusted proxy, http", "10.0.0.1:5000", false, []string{"http"}, nil, false, "10.0.0.1"},
		{"trusted proxy, no header", "10.0.0.1:5000", false, nil, nil, false, "10.0.0.1"},
		{"trusted loopback proxy", "127.0.0.1:5000", false, []string{"https"}, nil, true, "127.0.0.1"},
		{"trusted, IPv4-mapped peer", "[::ffff:127.0.0.1]:5000", false, []string{"https"}, nil, true, "127.0.0.1"},
		{"loopback is not trusted by itself", "127.0.0.2:5000", false, []string{"https"}, nil, false, "127.0.0.2"},
		// The proxy appended to what the client sent: only the last is its own.
		{"client's value before the proxy's", "10.0.0.1:5000", false, []string{"https, http"}, nil, false, "10.0.0.1"},
		{"client's header line before the proxy's", "10.0.0.1:5000", false, []string{"http", "https"}, nil, true, "10.0.0.1"},
		{"forged X-Forwarded-For entries", "10.0.0.1:5000", false, nil, []string{"192.0.2.1, 203.0.113.9"}, false, "203.0.113.9"},
		{"two trusted proxies", "10.0.0.1:5000", false, nil, []string{"203.0.113.9, 10.0.0.2"}, false, "203.0.113.9"},
		{"all trusted", "10.0.0.1:5000", false, nil, []string{"10.0.0.3, 10.0.0.2"}, false, "10.0.0.3"},
		{"garbage in X-Forwarded-For", "10.0.0.1:5000", false, nil, []string{"203.0.113.9, unknown"}, false, "10.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "http://labs.example.com/", nil)
			r.RemoteAddr = tt.peer
			if tt.tls {
				r.TLS = &tls.ConnectionState{}
			} else {
				r.TLS = nil
			}
			for _, v := range tt.proto {
				r.Header.Add("X-Forwarded-Proto", v)
			}
			for _, v := range tt.forwarded {
				r.Header.Add("X-Forwarded-For", v)
			}
			c := s.clientOf(r)
			if c.https != tt.wantHTTPS || c.addr != tt.wantAddr {
				t.Errorf("clientOf = https %v addr %s, want https %v addr %s", c.https, c.addr, tt.wantHTTPS, tt.wantAddr)
			}
		})
	}
	// Without trusted proxies nothing forwarded counts.
	none := &server{}
	r := httptest.NewRequest("GET", "http://labs.example.com/", nil)
	r.RemoteAddr = "127.0.0.1:5000"
	r.Header.Set("X-Forwarded-Proto", "https")
	r.Header.Set("X-Forwarded-For", "203.0.113.9")
	if c := none.clientOf(r); c.https || c.addr != "127.0.0.1" {
		t.Errorf("no trusted proxies: clientOf = %+v, want plain http from 127.0.0.1", c)
	}
}

// proxyServer is a labd with every cookie-setting route on (instructor,
// previews path- and host-based with a learner app on port 5001); the
// test's client reaches it from 127.0.0.1 and plays the reverse proxy.
type proxyServer struct {
	*testServer
	labdURL, domain string
}

const proxyToken = "proxy-s3cret"

func newProxyServer(t *testing.T, opt func(o *Options)) *proxyServer {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := progress.Open(context.Background(), filepath.Join(t.TempDir(), "labd.db"))
	if err != nil {
		t.Fatal(err)
	}
	live := grader.NewLive(grader.LiveOptions{Store: store, Logger: quiet})
	t.Cleanup(func() { live.Close(); store.Close() })
	s, pp := newPreviewServer(t, func(o *Options, addr string) {
		_, port, _ := net.SplitHostPort(addr)
		o.PreviewDomain = "preview.test:" + port
		o.InstructorToken = proxyToken
		o.Grader = live
		if opt != nil {
			opt(o)
		}
	})
	pp.set(5001, learnerApp(t).Listener.Addr().String())
	addr := s.Listener.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	return &proxyServer{testServer: s, labdURL: "http://" + addr, domain: "preview.test:" + port}
}

// roundTripFunc is an http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// proxyClient is a browser behind a TLS-terminating proxy: it uses
// https:// URLs when proto is "https" (its cookie jar then keeps Secure
// cookies, and sends them), and the "proxy" passes every request to the
// test server over plain HTTP from 127.0.0.1 with X-Forwarded-Proto:
// proto (none when ""), whatever host the URL names (wildcard DNS).
func proxyClient(t *testing.T, srv *httptest.Server, proto string) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	addr := srv.Listener.Addr().String()
	var d net.Dialer
	inner := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}}
	t.Cleanup(inner.CloseIdleConnections)
	return &http.Client{
		Jar:     jar,
		Timeout: waitTimeout,
		Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			out := r.Clone(r.Context())
			out.URL.Scheme = "http"
			if proto != "" {
				out.Header.Set("X-Forwarded-Proto", proto)
			}
			return inner.RoundTrip(out)
		}),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// TestForwardedTLS: behind a trusted TLS proxy every cookie labd sets is
// Secure and every answer carries HSTS, on labd's host and on preview
// hosts, and the Origin check wants the https origin; without TLS, or
// when the peer that claims it is not trusted, none of that.
func TestForwardedTLS(t *testing.T) {
	const hstsYear = "max-age=31536000"
	tests := []struct {
		name    string
		trusted []netip.Prefix
		subs    bool
		proto   string // X-Forwarded-Proto the proxy sends
		want    string // Strict-Transport-Security wanted; "": none, and no Secure
	}{
		{"trusted proxy, https", prefixes("127.0.0.1/32"), false, "https", hstsYear},
		{"trusted proxy, https, subdomains", prefixes("127.0.0.0/8"), true, "https", hstsYear + "; includeSubDomains"},
		{"trusted proxy, http", prefixes("127.0.0.1/32"), false, "http", ""},
		{"trusted proxy, no header", prefixes("127.0.0.1/32"), false, "", ""},
		{"untrusted peer claims https", prefixes("192.0.2.0/24", "127.0.0.2/32"), false, "https", ""},
		{"no trusted proxies, https claimed", nil, false, "https", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newProxyServer(t, func(o *Options) {
				o.TrustedProxies = tt.trusted
				o.HSTSIncludeSubdomains = tt.subs
			})
			c := proxyClient(t, s.Server, tt.proto)
			scheme := "http://"
			if tt.proto == "https" {
				scheme = "https://" // the browser's view
			}
			host := s.Listener.Addr().String()
			labd := scheme + host
			secure := tt.want != ""
			do := func(what, u string) *http.Response {
				t.Helper()
				resp, err := c.Get(u)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if got := resp.Header.Values("Strict-Transport-Security"); tt.want == "" && len(got) > 0 || tt.want != "" && (len(got) != 1 || got[0] != tt.want) {
					t.Errorf("%s: Strict-Transport-Security %q, want %q", what, got, tt.want)
				}
				return resp
			}
			// cookie checks that the answer set the named cookie, Secure
			// exactly when the browser came over TLS.
			cookie := func(what string, resp *http.Response, name string) {
				t.Helper()
				for _, sc := range resp.Header.Values("Set-Cookie") {
					if strings.HasPrefix(sc, name+"=") {
						if has := strings.Contains(sc, "; Secure"); has != secure {
							t.Errorf("%s: Set-Cookie %q: Secure %v, want %v", what, sc, has, secure)
						}
						return
					}
				}
				t.Errorf("%s: no %s cookie set (Set-Cookie %q)", what, name, resp.Header.Values("Set-Cookie"))
			}

			cookie("first visit", do("catalogue", labd+"/"), cookieName)
			sid := sandboxOf(t, c, labd)
			cookie("instructor token", do("instructor", labd+"/instructor?token="+proxyToken), instructorCookie)
			do("unknown page", labd+"/no-such-page")
			do("health", labd+"/healthz")
			do("refusal", labd+"/sandboxes/sb-0000000000000000/files")

			// Path-based preview: the app's own cookie too.
			entry := do("preview entry", labd+"/sandboxes/"+sid+"/ports/5001/cookies")
			if entry.StatusCode != http.StatusFound {
				t.Fatalf("path preview entry: %d", entry.StatusCode)
			}
			capped := do("path preview", labd+entry.Header.Get("Location"))
			if capped.StatusCode != 200 {
				t.Fatalf("path preview: %d", capped.StatusCode)
			}
			cookie("app through the path preview", capped, "session")

			// Host-based preview: the link's scheme, the host cookie.
			link := do("ports box", labd+"/sandboxes/"+sid+"/ports?port=5001").Header.Get("Location")
			// labd links with the scheme it believes in.
			previewScheme := "http://"
			if secure {
				previewScheme = "https://"
			}
			preview := fmt.Sprintf("%s5001-%s.%s", previewScheme, sid, s.domain)
			if !strings.HasPrefix(link, preview+authPath+"?token=") {
				t.Fatalf("preview host link %q, want %s%s?token=...", link, preview, authPath)
			}
			cookie("preview host auth", do("preview host auth", link), previewCookie)
			app := do("preview host", preview+"/cookies")
			if app.StatusCode != 200 {
				t.Fatalf("preview host: %d", app.StatusCode)
			}
			cookie("app on the preview host", app, "session")
			do("preview host refusal", fmt.Sprintf("%s5002-%s.%s/", previewScheme, sid, s.domain))

			// The terminal's Origin check takes the page's own origin as
			// the browser sees it: only https behind the TLS proxy.
			u, _ := url.Parse(labd)
			var cookies []string
			for _, ck := range c.Jar.Cookies(u) {
				cookies = append(cookies, ck.Name+"="+ck.Value)
			}
			for _, tc := range []struct {
				origin string
				want   int
			}{
				{"https://" + host, http.StatusSwitchingProtocols},
				{"http://" + host, map[bool]int{true: http.StatusForbidden, false: http.StatusSwitchingProtocols}[secure]},
				{"https://evil.example", http.StatusForbidden},
			} {
				h := http.Header{"Origin": {tc.origin}, "Cookie": {strings.Join(cookies, "; ")}}
				if tt.proto != "" {
					h.Set("X-Forwarded-Proto", tt.proto)
				}
				d := websocket.Dialer{Subprotocols: []string{terminal.Subprotocol}, HandshakeTimeout: waitTimeout}
				ws, resp, err := d.Dial("ws://"+host+"/sandboxes/"+sid+"/terminal", h)
				if ws != nil {
					ws.Close()
				}
				if resp == nil || resp.StatusCode != tc.want {
					t.Errorf("terminal with Origin %s: %v %v, want %d", tc.origin, resp, err, tc.want)
				}
			}
		})
	}
}

// TestAppCookie: the app's cookies lose Domain and, over TLS, gain Secure
// once.
func TestAppCookie(t *testing.T) {
	tests := []struct {
		in     string
		secure bool
		want   string
	}{
		{"a=1; Path=/; Domain=example.com", false, "a=1; Path=/"},
		{"a=1; Path=/; Domain=example.com", true, "a=1; Path=/; Secure"},
		{"a=1; secure; HttpOnly", true, "a=1; secure; HttpOnly"},
		{"a=1", true, "a=1; Secure"},
		{"a=1", false, "a=1"},
	}
	for _, tt := range tests {
		if got := appCookie(tt.in, tt.secure); got != tt.want {
			t.Errorf("appCookie(%q, %v) = %q, want %q", tt.in, tt.secure, got, tt.want)
		}
	}
}

// TestForwardedToApp: the app hears the browser's scheme as labd
// believes it, and its own HSTS header never reaches the browser.
func TestForwardedToApp(t *testing.T) {
	for _, trusted := range []bool{true, false} {
		t.Run(fmt.Sprint("trusted=", trusted), func(t *testing.T) {
			s, pp := newPreviewServer(t, func(o *Options, _ string) {
				if trusted {
					o.TrustedProxies = prefixes("127.0.0.1/32")
				}
			})
			mux := http.NewServeMux()
			mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Strict-Transport-Security", "max-age=0")
				fmt.Fprintf(w, "proto=%s\n", r.Header.Get("X-Forwarded-Proto"))
			})
			app := httptest.NewServer(mux)
			t.Cleanup(app.Close)
			pp.set(5001, app.Listener.Addr().String())
			c := s.client(t)
			sid := sandboxOf(t, c, s.URL)
			u := capURL(t, c, s.URL, sid, 5001) + "/"
			req, _ := http.NewRequest("GET", u, nil)
			req.Header.Set("X-Forwarded-Proto", "https")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			wantProto, wantHSTS := "proto=http\n", []string(nil)
			if trusted {
				wantProto, wantHSTS = "proto=https\n", []string{"max-age=31536000"}
			}
			if string(b) != wantProto {
				t.Errorf("the app heard %q, want %q", b, wantProto)
			}
			if got := resp.Header.Values("Strict-Transport-Security"); fmt.Sprint(got) != fmt.Sprint(wantHSTS) {
				t.Errorf("Strict-Transport-Security %q, want %q (labd's only)", got, wantHSTS)
			}
		})
	}
}
