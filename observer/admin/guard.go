package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
)

// IsLoopback reports whether a listen address can only be reached from this
// host: its host is "localhost" or a loopback IP. An empty host or a wildcard
// (":9779", "0.0.0.0:9779", "[::]:9779") listens on every interface, and any
// other name may resolve to anything.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ReadTokenFile reads the bearer token of the mutating endpoints: the whole
// file, surrounding white space trimmed. Errors name the file, never its
// content.
func ReadTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	switch {
	case tok == "":
		return "", fmt.Errorf("admin token file %s is empty", path)
	case len(tok) < minToken:
		return "", fmt.Errorf("admin token file %s: the token must have at least %d characters", path, minToken)
	case strings.ContainsAny(tok, " \t\r\n"):
		return "", fmt.Errorf("admin token file %s: the token must be one line without white space", path)
	}
	return tok, nil
}

// minToken keeps guessable tokens out; 16 characters of a random base64 or
// hex string are at least 64 bits.
const minToken = 16

// ErrTokenRequired is returned by CheckListen for a non-loopback address
// without a token.
var ErrTokenRequired = errors.New("a non-loopback --admin-addr needs --admin-token-file: anyone who can reach it could pause intake")

// CheckListen refuses to serve the mutating endpoints unauthenticated beyond
// this host.
func CheckListen(addr, token string) error {
	if token == "" && !IsLoopback(addr) {
		return fmt.Errorf("--admin-addr %s: %w", addr, ErrTokenRequired)
	}
	return nil
}

// hostGuard answers 421 to a request whose Host is not a name of this
// listener. A web page that rebinds its own DNS name to 127.0.0.1 reaches
// the listener as a same-origin page, so neither the browser nor the
// cross-origin check stops it; its requests still carry its own name in
// Host. Accepted are the loopback names, the configured host, and any IP
// literal: a rebinding page always has a DNS name, and probes and scrapers
// that dial a pod or host IP send that IP.
func hostGuard(configured string, next http.Handler) http.Handler {
	own, _, err := net.SplitHostPort(configured)
	if err != nil {
		own = configured
	}
	own = strings.ToLower(strings.Trim(own, "[]"))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hostAllowed(r.Host, own) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(http.StatusMisdirectedRequest)
			fmt.Fprint(w, "unknown Host: use localhost, an IP address or the configured admin address\n")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func hostAllowed(hostport, own string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	switch {
	case host == "":
		// HTTP/1.0 without Host: not a browser.
		return true
	case host == "localhost":
		return true
	case own != "" && host == own:
		return true
	}
	return net.ParseIP(host) != nil
}

// BearerToken returns the credential of an Authorization header value of
// the Bearer scheme, whose name is case-insensitive (RFC 9110), and whether
// there is one.
func BearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(header, " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", false
	}
	return token, true
}

// requireToken lets a request through only with "Authorization: Bearer
// <token>". Both sides are hashed first so that the comparison takes the
// same time whatever the length or content of the guess.
func requireToken(token string, next http.HandlerFunc) http.HandlerFunc {
	want := sha256.Sum256([]byte(token))
	return func(w http.ResponseWriter, r *http.Request) {
		got, ok := BearerToken(r.Header.Get("Authorization"))
		sum := sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sauna admin"`)
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, "this endpoint needs the admin token: Authorization: Bearer <token>\n")
			return
		}
		next(w, r)
	}
}
