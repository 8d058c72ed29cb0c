package admin

import (
	"bytes"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9779": true, "127.0.0.2:1": true, "localhost:9779": true, "LOCALHOST:0": true, "[::1]:9779": true,
		"0.0.0.0:9779": false, ":9779": false, "[::]:9779": false, "10.0.0.5:9779": false,
		"sauna.internal:9779": false, "127.0.0.1": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestHostCheck(t *testing.T) {
	h := newTestHandler(&fakeStatus{}, NewGate(), Options{Addr: "admin.sauna.internal:9779"})
	for host, want := range map[string]int{
		"localhost":                 http.StatusOK,
		"localhost:9779":            http.StatusOK,
		"127.0.0.1":                 http.StatusOK,
		"127.0.0.1:9779":            http.StatusOK,
		"[::1]":                     http.StatusOK,
		"[::1]:9779":                http.StatusOK,
		"10.1.2.3:9779":             http.StatusOK, // a probe dialling the pod IP
		"admin.sauna.internal:9779": http.StatusOK,
		"Admin.Sauna.Internal.":     http.StatusOK,
		"evil.example":              http.StatusMisdirectedRequest,
		"evil.example:9779":         http.StatusMisdirectedRequest,
		"127.0.0.1.evil.example":    http.StatusMisdirectedRequest,
		"localhost.evil.example":    http.StatusMisdirectedRequest,
	} {
		for _, req := range []struct{ method, path string }{{"GET", "/status"}, {"POST", "/pause"}} {
			if code, body := do(t, h, req.method, req.path, "Host", host); code != want {
				t.Errorf("%s %s with Host %q: %d %q, want %d", req.method, req.path, host, code, body, want)
			}
		}
	}
}

// A page that rebinds its DNS name to the listener is same-origin for the
// browser; only the Host check keeps its POST out.
func TestRebindingPageCannotPause(t *testing.T) {
	g := NewGate()
	h := newTestHandler(&fakeStatus{}, g, Options{Addr: "127.0.0.1:9779"})
	code, _ := do(t, h, "POST", "/pause", "Host", "rebind.evil.example:9779", "Origin", "http://rebind.evil.example:9779", "Sec-Fetch-Site", "same-origin")
	if code != http.StatusMisdirectedRequest || g.Paused() {
		t.Errorf("rebound POST /pause: %d, paused %v; want 421 and not paused", code, g.Paused())
	}
}

func TestTokenGuardsMutatingEndpoints(t *testing.T) {
	const token = "s3cr3t-admin-token-0123456789"
	var logs bytes.Buffer
	g := NewGate()
	h := newTestHandler(&fakeStatus{}, g, Options{Token: token, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	for _, hdr := range [][]string{
		nil,
		{"Authorization", "Bearer wrong"},
		{"Authorization", "Bearer " + token[:len(token)-1]},
		{"Authorization", "Bearer " + token + "x"},
		{"Authorization", "Basic " + token},
		{"Authorization", token},
	} {
		for _, path := range []string{"/pause", "/resume"} {
			code, body := do(t, h, "POST", path, hdr...)
			if code != http.StatusUnauthorized {
				t.Errorf("POST %s with %q: %d, want 401", path, hdr, code)
			}
			if strings.Contains(body, token) {
				t.Errorf("401 body quotes the token: %q", body)
			}
		}
	}
	if g.Paused() {
		t.Fatal("paused without the token")
	}
	if code, _ := do(t, h, "POST", "/pause", "Authorization", "Bearer "+token); code != http.StatusOK || !g.Paused() {
		t.Errorf("POST /pause with the token: %d, paused %v", code, g.Paused())
	}
	if code, _ := do(t, h, "POST", "/resume", "Authorization", "Bearer "+token); code != http.StatusOK || g.Paused() {
		t.Errorf("POST /resume with the token: %d, paused %v", code, g.Paused())
	}
	// The scheme name is case-insensitive.
	if code, _ := do(t, h, "POST", "/pause", "Authorization", "bearer "+token); code != http.StatusOK || !g.Paused() {
		t.Errorf("POST /pause with scheme \"bearer\": %d, paused %v", code, g.Paused())
	}
	// Reads stay open.
	if code, _ := do(t, h, "GET", "/status"); code != http.StatusOK {
		t.Errorf("GET /status without the token: %d", code)
	}
	if strings.Contains(logs.String(), token) {
		t.Errorf("the token was logged: %s", logs.String())
	}
}

func TestReadTokenFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "  0123456789abcdef0123\n")
	if tok, err := ReadTokenFile(good); err != nil || tok != "0123456789abcdef0123" {
		t.Errorf("ReadTokenFile = %q, %v", tok, err)
	}
	for name, tc := range map[string]struct{ content, want string }{
		"empty": {"\n", "is empty"},
		"short": {"abc\n", "at least 16 characters"},
		"space": {"0123456789abcdef 0123456789abcdef", "one line without white space"},
	} {
		p := write(name, tc.content)
		_, err := ReadTokenFile(p)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v, want an error naming %s and %q", name, err, p, tc.want)
		}
		if err != nil && strings.TrimSpace(tc.content) != "" && strings.Contains(err.Error(), strings.Fields(tc.content)[0]) {
			t.Errorf("%s: error quotes the content: %v", name, err)
		}
	}
	if _, err := ReadTokenFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file: no error")
	}
}

func TestCheckListen(t *testing.T) {
	if err := CheckListen("127.0.0.1:9779", ""); err != nil {
		t.Errorf("loopback without a token: %v", err)
	}
	if err := CheckListen("0.0.0.0:9779", "0123456789abcdef"); err != nil {
		t.Errorf("wildcard with a token: %v", err)
	}
	for _, addr := range []string{"0.0.0.0:9779", ":9779", "10.0.0.5:9779", "sauna.internal:9779"} {
		if err := CheckListen(addr, ""); err == nil || !strings.Contains(err.Error(), "--admin-token-file") || !strings.Contains(err.Error(), addr) {
			t.Errorf("CheckListen(%q, no token) = %v", addr, err)
		}
	}
}
