package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sauna-io/sauna/observer/kinesis/emulator"
)

// TestAdminAddressBeyondLoopbackNeedsToken: the binary refuses to serve the
// pause switch beyond loopback without a token, and says why.
func TestAdminAddressBeyondLoopbackNeedsToken(t *testing.T) {
	sauna(t) // built before runCLI's deadline starts
	dir := t.TempDir()
	for _, addr := range []string{"0.0.0.0:0", ":0"} {
		code, _, stderr := runCLI(t, emulator.Env{}, "", "run", "--config-dir", dir, "--admin-addr", addr)
		if code != 2 || !strings.Contains(stderr, "sauna run: --admin-addr "+addr) || !strings.Contains(stderr, "--admin-token-file") {
			t.Errorf("--admin-addr %s without a token: exit %d, stderr %q; want 2 and an error naming both flags", addr, code, stderr)
		}
	}
	empty := filepath.Join(dir, "token")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, emulator.Env{}, "", "run", "--config-dir", dir, "--admin-addr", "0.0.0.0:0", "--admin-token-file", empty)
	if code != 2 || !strings.Contains(stderr, "sauna run: admin token file "+empty+" is empty") {
		t.Errorf("empty token file: exit %d, stderr %q", code, stderr)
	}
}

// TestAdminTokenAndHost runs the binary with a token file: POST /pause and
// /resume need the token, the GET endpoints do not, a request naming another
// host (a DNS-rebinding page) is refused, and the token never reaches the log.
func TestAdminTokenAndHost(t *testing.T) {
	dir := t.TempDir()
	token := randomSecret("admintoken")
	tokenFile := writeFile(t, t.TempDir(), "admin-token", token+"\n")
	p := startSauna(t, emulator.Env{}, dir, "--admin-token-file", tokenFile)
	base := p.adminURL(t)

	send := func(method, path, host, auth string) int {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	paused := func() bool {
		_, body := httpDo(t, "GET", base+"/status")
		return strings.Contains(body, `"paused": true`)
	}

	if code := send("POST", "/pause", "", ""); code != http.StatusUnauthorized {
		t.Errorf("POST /pause without the token: %d, want 401", code)
	}
	if code := send("POST", "/pause", "", "Bearer not-the-token"); code != http.StatusUnauthorized {
		t.Errorf("POST /pause with a wrong token: %d, want 401", code)
	}
	if code := send("POST", "/pause", "rebind.evil.example", "Bearer "+token); code != http.StatusMisdirectedRequest {
		t.Errorf("POST /pause with a foreign Host: %d, want 421", code)
	}
	if code := send("GET", "/status", "rebind.evil.example:9779", ""); code != http.StatusMisdirectedRequest {
		t.Errorf("GET /status with a foreign Host: %d, want 421", code)
	}
	if paused() {
		t.Fatal("intake paused without a valid request")
	}
	if code := send("POST", "/pause", "localhost", "Bearer "+token); code != http.StatusOK || !paused() {
		t.Errorf("POST /pause with the token: %d, paused %v", code, paused())
	}
	if code := send("POST", "/resume", "", "Bearer "+token); code != http.StatusOK || paused() {
		t.Errorf("POST /resume with the token: %d, paused %v", code, paused())
	}
	if code := send("GET", "/healthz", "", ""); code != http.StatusOK {
		t.Errorf("GET /healthz without the token: %d", code)
	}
	if _, err := p.stop(t); err != nil {
		t.Errorf("sauna exit: %v", err)
	}
	if strings.Contains(p.output(), token) {
		t.Error("the admin token appears in the log")
	}
}
