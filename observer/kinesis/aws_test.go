package kinesis

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// doer keeps the request it is given.
type doer struct{ got *http.Request }

func (d *doer) Do(r *http.Request) (*http.Response, error) {
	d.got = r
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}, nil
}

// closeCount is a request body net/http cannot see into.
type closeCount struct {
	io.Reader
	closed int
}

func (c *closeCount) Close() error { c.closed++; return nil }

// A DynamoDB request body small enough to go out with its headers reaches
// net/http as one it knows to be in memory (an io.NopCloser of a
// *bytes.Reader, what makes it write headers and body at once), with the
// same bytes, again from GetBody; the SDK's body is closed. A larger one
// goes as it is.
func TestOneWriteBody(t *testing.T) {
	payload := strings.Repeat(`{"S":"x"},`, 1700) // an outcome write's size
	orig := &closeCount{Reader: strings.NewReader(payload)}
	req, err := http.NewRequest(http.MethodPost, "http://127.0.0.1:1/", orig)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(payload))
	d := &doer{}
	if _, err := (oneWrite{d}).Do(req); err != nil {
		t.Fatalf("Do: %v", err)
	}
	if orig.closed != 1 {
		t.Errorf("SDK body closed %d times, want 1", orig.closed)
	}
	if d.got.Body == nil || d.got.Body == http.NoBody {
		t.Fatal("no body sent")
	}
	if got := d.got.Body; got == io.ReadCloser(orig) || !bytes.Equal(mustRead(t, got), []byte(payload)) {
		t.Error("sent body is not an in-memory copy of the SDK's")
	}
	if want := io.NopCloser(bytes.NewReader(nil)); typeName(d.got.Body) != typeName(want) {
		t.Errorf("sent body is a %s, want %s", typeName(d.got.Body), typeName(want))
	}
	again, err := d.got.GetBody()
	if err != nil || !bytes.Equal(mustRead(t, again), []byte(payload)) {
		t.Errorf("GetBody: %v, or other bytes", err)
	}
	if d.got.ContentLength != int64(len(payload)) || d.got.URL.String() != req.URL.String() {
		t.Errorf("request changed: length %d, url %s", d.got.ContentLength, d.got.URL)
	}

	big := &closeCount{Reader: strings.NewReader(strings.Repeat("y", requestBuffer))}
	req, _ = http.NewRequest(http.MethodPost, "http://127.0.0.1:1/", big)
	req.ContentLength = requestBuffer
	if _, err := (oneWrite{d}).Do(req); err != nil {
		t.Fatalf("Do: %v", err)
	}
	if d.got != req || big.closed != 0 {
		t.Error("a body larger than the write buffer was not passed on as it is")
	}
}

func mustRead(t *testing.T, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func typeName(v any) string { return fmt.Sprintf("%T", v) }
