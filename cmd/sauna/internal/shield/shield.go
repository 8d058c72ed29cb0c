// Package shield passes HTTP requests on to a local AWS emulator whole.
// kinesalite and dynalite crash on a request whose body stops short (their
// request error handlers throw), which is what a process killed in the
// middle of a write leaves behind; a Forwarder reads every request whole
// before passing it on and finishes the exchange even when its client is
// gone, so a kill -9 in cmd/sauna's end-to-end tests never reaches the
// emulator. The shieldproxy program and the tests' own proxies share it.
package shield

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"time"
)

// Forwarder passes every request on to Target with Client.
type Forwarder struct {
	Target string
	Client *http.Client
	// Answered, when set, is called with the request's operation (Op) and
	// body once the emulator answered, before the answer goes back: a
	// test may delay or hold answers there.
	Answered func(op string, body []byte)
}

// Op is a request's operation: its X-Amz-Target after the last dot.
func Op(r *http.Request) string {
	op := r.Header.Get("X-Amz-Target")
	if i := strings.LastIndex(op, "."); i >= 0 {
		op = op[i+1:]
	}
	return op
}

// exchangeTimeout bounds one exchange with the emulator, which goes on
// when the client is gone.
const exchangeTimeout = 30 * time.Second

func (f *Forwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), exchangeTimeout)
	defer cancel()
	out, err := http.NewRequestWithContext(ctx, r.Method, f.Target+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	copyHeader(out.Header, r.Header)
	resp, err := f.Client.Do(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	answer, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	if f.Answered != nil {
		f.Answered(Op(r), body)
	}
	copyHeader(w.Header(), resp.Header)
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(answer)
}

// copyHeader copies the end-to-end headers of from; the framing ones are
// each side's own.
func copyHeader(to, from http.Header) {
	for k, v := range from {
		switch k {
		case "Connection", "Content-Length", "Transfer-Encoding":
		default:
			to[k] = v
		}
	}
}
