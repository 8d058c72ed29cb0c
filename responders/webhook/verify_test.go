package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"time"
)

// verifySignature is the receiver-side check shown in README.md; the tests
// run it against what the responder sends.
func verifySignature(secret []byte, header http.Header, body []byte, now time.Time) error {
	ts := header.Get("X-Sauna-Timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("missing or malformed X-Sauna-Timestamp")
	}
	if age := now.Sub(time.Unix(sec, 0)); age > 5*time.Minute || age < -5*time.Minute {
		return errors.New("X-Sauna-Timestamp is more than 5 minutes away: a replay?")
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts + "." + header.Get("X-Sauna-Command-Id") + "."))
	mac.Write(body) // the raw bytes received, before any JSON parsing
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(want), []byte(header.Get("X-Sauna-Signature"))) {
		return errors.New("X-Sauna-Signature does not match")
	}
	return nil
}
