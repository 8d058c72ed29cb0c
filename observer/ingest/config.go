package ingest

import (
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"time"

	"github.com/sauna-io/sauna/observer/admin"
	"github.com/sauna-io/sauna/observer/kinesis"
	"github.com/sauna-io/sauna/schemas"
)

// ConfigSchema is the HttpIngestConfig version this build accepts.
var ConfigSchema = schemas.Key{Vendor: "io.sauna.ingest", Name: "HttpIngestConfig", Format: "avro", Model: 1, Revision: 0, Addition: 0}

// Configs are the config schemas of the ingest endpoint.
var Configs = schemas.ConfigSchemas{Current: ConfigSchema}

// Limits of PutRecords (per request), which bound the settings.
const (
	maxPutRecords      = 500
	maxPutRequestBytes = 5 << 20
	maxPartitionKey    = 256
)

// Config is one validated ingest endpoint.
type Config struct {
	ID     string
	File   string
	Listen string
	// TLSCert and TLSKey are both empty for plain HTTP.
	TLSCert, TLSKey string

	Region     string
	StreamName string
	// AccessKeyID and SecretAccessKey are both empty for the AWS default
	// credential chain.
	AccessKeyID     string
	SecretAccessKey string

	Tokens []Token

	MaxBodyBytes  int64
	MaxCommands   int
	DefaultTTL    time.Duration // 0: wrapped commands never expire
	PutTimeout    time.Duration
	Linger        time.Duration
	MaxQueued     int
	MaxConcurrent int
}

// Token is one accepted bearer token, known only by its hash.
type Token struct {
	Name   string
	SHA256 [32]byte
	// RatePerSecond is 0 when the token is not rate limited.
	RatePerSecond float64
}

// String never shows the secret key.
func (c Config) String() string {
	return fmt.Sprintf("ingest %s (listen %s, stream %s, region %s)", c.ID, c.Listen, c.StreamName, c.Region)
}

// Loopback reports whether the listen address only accepts local clients.
func (c Config) Loopback() bool { return admin.IsLoopback(c.Listen) }

// listenerKey holds what needs a new listener when it changes.
func (c Config) listenerKey() string { return c.Listen + "\x00" + c.TLSCert + "\x00" + c.TLSKey }

// producerKey holds what needs a new Kinesis producer when it changes.
func (c Config) producerKey() string {
	return strings.Join([]string{c.Region, c.StreamName, c.AccessKeyID, c.SecretAccessKey,
		c.Linger.String(), fmt.Sprint(c.MaxQueued, c.MaxConcurrent)}, "\x00")
}

type params struct {
	Listen  string          `json:"listen"`
	AWS     kinesis.AWSKeys `json:"aws"`
	Kinesis struct {
		Region     string `json:"region"`
		StreamName string `json:"streamName"`
	} `json:"kinesis"`
	Tokens []struct {
		Name          string   `json:"name"`
		SHA256        string   `json:"sha256"`
		RatePerSecond *float64 `json:"rateLimitPerSecond"`
	} `json:"tokens"`
	TLS *struct {
		CertFile string `json:"certFile"`
		KeyFile  string `json:"keyFile"`
	} `json:"tls"`
	MaxBodyBytes            int64 `json:"maxBodyBytes"`
	MaxCommandsPerRequest   int   `json:"maxCommandsPerRequest"`
	DefaultTimeToLiveMillis int64 `json:"defaultTimeToLiveMillis"`
	PutTimeoutMillis        int   `json:"putTimeoutMillis"`
	LingerMillis            int   `json:"lingerMillis"`
	MaxQueuedRecords        int   `json:"maxQueuedRecords"`
	MaxConcurrentPuts       int   `json:"maxConcurrentPuts"`
}

// ParseConfig validates an ingest config normalised by Configs.Normalise.
// Every returned error is a *schemas.FieldError or an errors.Join of them.
func ParseConfig(n schemas.Normalised) (Config, error) {
	var p params
	id, err := n.Unmarshal(Configs, &p)
	if err != nil {
		return Config{}, err
	}
	c := Config{
		ID:              id,
		File:            n.File,
		Listen:          p.Listen,
		Region:          p.Kinesis.Region,
		StreamName:      p.Kinesis.StreamName,
		AccessKeyID:     p.AWS.AccessKeyID,
		SecretAccessKey: p.AWS.SecretAccessKey,
		MaxBodyBytes:    p.MaxBodyBytes,
		MaxCommands:     p.MaxCommandsPerRequest,
		DefaultTTL:      time.Duration(p.DefaultTimeToLiveMillis) * time.Millisecond,
		PutTimeout:      time.Duration(p.PutTimeoutMillis) * time.Millisecond,
		Linger:          time.Duration(p.LingerMillis) * time.Millisecond,
		MaxQueued:       p.MaxQueuedRecords,
		MaxConcurrent:   p.MaxConcurrentPuts,
	}
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, n.FieldError(field, format, args...))
	}
	if err := kinesis.ValidID(n, c.ID); err != nil {
		errs = append(errs, err)
	}
	if host, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		add("parameters.listen", "%q is not host:port", c.Listen)
	} else if host == "" {
		add("parameters.listen", "%q listens on every interface; name the address explicitly (e.g. 0.0.0.0:8080) if that is meant", c.Listen)
	}
	errs = append(errs, kinesis.ValidStreamAccess(n, c.Region, c.StreamName, c.AccessKeyID, c.SecretAccessKey)...)
	c.Tokens = tokens(p, add)
	if p.TLS != nil {
		c.TLSCert, c.TLSKey = p.TLS.CertFile, p.TLS.KeyFile
		if _, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey); err != nil {
			add("parameters.tls", "cannot load the certificate and key: %v", err)
		}
	}
	limits(c, p, add)
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return c, nil
}

// tokens reads parameters.tokens, reporting each problem with add.
func tokens(p params, add func(field, format string, args ...any)) []Token {
	if len(p.Tokens) == 0 {
		add("parameters.tokens", "no token: the endpoint would refuse every request; add at least one {\"name\", \"sha256\"}")
	}
	var out []Token
	names := map[string]bool{}
	for i, t := range p.Tokens {
		field := fmt.Sprintf("parameters.tokens[%d]", i)
		tok := Token{Name: t.Name}
		if t.Name == "" {
			add(field+".name", "must not be empty")
		} else if names[t.Name] {
			add(field+".name", "%q is used by another token; names must be unique", t.Name)
		}
		names[t.Name] = true
		if b, err := hex.DecodeString(t.SHA256); err != nil || len(b) != len(tok.SHA256) {
			// The value is not quoted back: it might be a token pasted by mistake.
			add(field+".sha256", "must be the 64 hex digits of the token's SHA-256 (printf %%s TOKEN | sha256sum), not the token itself")
		} else {
			copy(tok.SHA256[:], b)
		}
		if r := t.RatePerSecond; r != nil {
			if !(*r > 0) || math.IsInf(*r, 0) {
				add(field+".rateLimitPerSecond", "must be above 0 or null, got %v", *r)
			} else {
				tok.RatePerSecond = *r
			}
		}
		out = append(out, tok)
	}
	return out
}

// limits checks the size, time and queue settings.
func limits(c Config, p params, add func(field, format string, args ...any)) {
	if c.MaxBodyBytes < 1 || c.MaxBodyBytes > maxPutRequestBytes {
		add("parameters.maxBodyBytes", "must be between 1 and %d, got %d", maxPutRequestBytes, c.MaxBodyBytes)
	}
	if c.MaxCommands < 1 || c.MaxCommands > maxPutRecords {
		add("parameters.maxCommandsPerRequest", "must be between 1 and %d, got %d", maxPutRecords, c.MaxCommands)
	}
	if c.DefaultTTL < 0 {
		add("parameters.defaultTimeToLiveMillis", "must not be negative, got %d", p.DefaultTimeToLiveMillis)
	}
	if c.PutTimeout < 100*time.Millisecond || c.PutTimeout > 2*time.Minute {
		add("parameters.putTimeoutMillis", "must be between 100 and 120000, got %d", p.PutTimeoutMillis)
	}
	if c.Linger < 0 || c.Linger > 100*time.Millisecond {
		add("parameters.lingerMillis", "must be between 0 and 100, got %d", p.LingerMillis)
	}
	if c.MaxQueued < maxPutRecords {
		add("parameters.maxQueuedRecords", "must be at least %d, got %d", maxPutRecords, c.MaxQueued)
	}
	if c.MaxConcurrent < 1 || c.MaxConcurrent > 64 {
		add("parameters.maxConcurrentPuts", "must be between 1 and 64, got %d", c.MaxConcurrent)
	}
}
