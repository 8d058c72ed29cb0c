package kinesis

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/sauna-io/sauna/observer/metrics"
	"github.com/sauna-io/sauna/schemas"
)

// Config schemas of the Kinesis observer. Sauna's AmazonKinesisConfig 1-0-0
// files keep working; the AmazonKinesisConfig additions 1-0-1 and 1-0-2 that
// earlier sauna releases published under Sauna's vendor are accepted with a
// deprecation warning. Missing settings take the defaults of the current
// schema's file, the only place those defaults are written.
var (
	ConfigV100 = schemas.Key{Vendor: "com.snowplowanalytics.sauna.observers", Name: "AmazonKinesisConfig", Format: "avro", Model: 1, Revision: 0, Addition: 0}
	// ConfigV101 and ConfigV102 are deprecated by ObserverConfigV100.
	ConfigV101         = schemas.Key{Vendor: "com.snowplowanalytics.sauna.observers", Name: "AmazonKinesisConfig", Format: "avro", Model: 1, Revision: 0, Addition: 1}
	ConfigV102         = schemas.Key{Vendor: "com.snowplowanalytics.sauna.observers", Name: "AmazonKinesisConfig", Format: "avro", Model: 1, Revision: 0, Addition: 2}
	ObserverConfigV100 = schemas.Key{Vendor: "io.sauna.observers", Name: "KinesisObserverConfig", Format: "avro", Model: 1, Revision: 0, Addition: 0}
)

// Configs are the config schemas of the Kinesis observer.
var Configs = schemas.ConfigSchemas{
	Current:    ObserverConfigV100,
	Older:      []schemas.Key{ConfigV100, ConfigV101, ConfigV102},
	Deprecated: []schemas.Key{ConfigV101, ConfigV102},
}

// Position is where a shard without a checkpoint starts.
type Position string

// Initial positions, as spelled in the config.
const (
	PositionTrimHorizon Position = "TRIM_HORIZON"
	PositionLatest      Position = "LATEST"
	PositionAtTimestamp Position = "AT_TIMESTAMP"
)

// Config is one validated Kinesis observer.
type Config struct {
	// ID names the observer and its DynamoDB lease table.
	ID         string
	File       string
	Region     string
	StreamName string
	// AccessKeyID and SecretAccessKey are both empty when the AWS default
	// credential chain is to be used.
	AccessKeyID     string
	SecretAccessKey string
	MaxRecords      int
	InitialPosition Position
	// Timestamp is set only for AT_TIMESTAMP.
	Timestamp time.Time

	ShardSyncInterval time.Duration
	IdleBetweenReads  time.Duration
	LeaseDuration     time.Duration
	LeaseRefresh      time.Duration
	ParentShardPoll   time.Duration

	// MaxInFlight bounds the commands of one shard running at once.
	MaxInFlight int
	// RetryBudget is how long retryable failures are retried before the
	// command is dead-lettered (or, without a dead-letter stream, retried on).
	RetryBudget time.Duration
	// DeadLetterStream is empty when there is none.
	DeadLetterStream string
	Idempotency      Idempotency
	CloudWatch       CloudWatch
	ScaleOut         ScaleOut
}

// ScaleOut configures how the workers of one observer id share the shards.
type ScaleOut struct {
	Balance            bool
	MaxLeasesPerWorker int // 0: no limit
	TakesPerPass       int
}

// Idempotency configures the command claims and outcomes table.
type Idempotency struct {
	Enabled      bool
	TableName    string
	Retention    time.Duration
	ClaimTimeout time.Duration
}

// CloudWatch configures the observer's CloudWatch metrics sink.
type CloudWatch struct {
	Enabled       bool
	Namespace     string
	FlushInterval time.Duration
}

// String never shows the secret key.
func (c Config) String() string {
	return fmt.Sprintf("kinesis observer %s (stream %s, region %s)", c.ID, c.StreamName, c.Region)
}

var (
	tableName  = regexp.MustCompile(`^[A-Za-z0-9_.-]{3,255}$`)
	streamName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)
)

// ValidID checks an observer id as a DynamoDB table name, because an
// observer id is its lease table's name. Ids of configs that own no table
// (responders) are not held to this rule.
func ValidID(n schemas.Normalised, id string) error {
	if !tableName.MatchString(id) {
		return n.FieldError("id", "%q is not usable as a DynamoDB table name: use 3-255 characters of A-Z a-z 0-9 _ . -", id)
	}
	return nil
}

// ValidStreamAccess checks the parameters.kinesis region and streamName and
// the parameters.aws keys that every config reaching a Kinesis stream holds,
// returning one *schemas.FieldError per problem.
func ValidStreamAccess(n schemas.Normalised, region, stream, accessKeyID, secretAccessKey string) []error {
	var errs []error
	if region == "" {
		errs = append(errs, n.FieldError("parameters.kinesis.region", "must not be empty"))
	}
	if !streamName.MatchString(stream) {
		errs = append(errs, n.FieldError("parameters.kinesis.streamName", "%q is not a Kinesis stream name: use 1-128 characters of A-Z a-z 0-9 _ . -", stream))
	}
	if (accessKeyID == "") != (secretAccessKey == "") {
		errs = append(errs, n.FieldError("parameters.aws", "set both accessKeyId and secretAccessKey, or leave both empty to use the AWS default credential chain"))
	}
	return errs
}

// AWSKeys is parameters.aws of every config that reaches a Kinesis stream;
// see ValidStreamAccess.
type AWSKeys struct {
	AccessKeyID     string `json:"accessKeyId"`
	SecretAccessKey string `json:"secretAccessKey"`
}

type params struct {
	AWS     AWSKeys `json:"aws"`
	Kinesis struct {
		Region                   string `json:"region"`
		StreamName               string `json:"streamName"`
		MaxRecords               int    `json:"maxRecords"`
		InitialPosition          string `json:"initialPosition"`
		InitialPositionModifiers *struct {
			Timestamp json.RawMessage `json:"timestamp"`
		} `json:"initialPositionModifiers"`
		ShardSyncIntervalMillis    int `json:"shardSyncIntervalMillis"`
		IdleTimeBetweenReadsMillis int `json:"idleTimeBetweenReadsMillis"`
		FailoverTimeMillis         int `json:"failoverTimeMillis"`
		LeaseRefreshMillis         int `json:"leaseRefreshMillis"`
		ParentShardPollMillis      int `json:"parentShardPollMillis"`
	} `json:"kinesis"`
	Delivery struct {
		MaxInFlightPerShard int     `json:"maxInFlightPerShard"`
		RetryBudgetMillis   int64   `json:"retryBudgetMillis"`
		DeadLetterStream    *string `json:"deadLetterStream"`
		Idempotency         struct {
			Enabled            bool    `json:"enabled"`
			TableName          *string `json:"tableName"`
			RetentionDays      int     `json:"retentionDays"`
			ClaimTimeoutMillis int     `json:"claimTimeoutMillis"`
		} `json:"idempotency"`
	} `json:"delivery"`
	CloudWatch struct {
		Enabled             bool    `json:"enabled"`
		Namespace           *string `json:"namespace"`
		FlushIntervalMillis int     `json:"flushIntervalMillis"`
	} `json:"cloudwatch"`
	ScaleOut struct {
		Balance            bool `json:"balance"`
		MaxLeasesPerWorker int  `json:"maxLeasesPerWorker"`
		TakesPerPass       int  `json:"takesPerPass"`
	} `json:"scaleOut"`
}

// ParseConfig validates a Kinesis observer config normalised by
// Configs.Normalise. Every returned error is a *schemas.FieldError or an
// errors.Join of them.
func ParseConfig(n schemas.Normalised) (Config, error) {
	var p params
	id, err := n.Unmarshal(Configs, &p)
	if err != nil {
		return Config{}, err
	}
	c := newConfig(n.File, id, p)
	v := validation{n: n}
	// The table name and namespace the file leaves out derive from the id; a
	// problem with one of them is reported on the id, the field the user wrote.
	v.idErr = ValidID(n, c.ID)
	if v.idErr != nil {
		v.errs = append(v.errs, v.idErr)
	}
	v.errs = append(v.errs, ValidStreamAccess(n, c.Region, c.StreamName, c.AccessKeyID, c.SecretAccessKey)...)
	v.kinesis(&c, p)
	v.delivery(c, p)
	v.cloudWatch(c, deref(p.CloudWatch.Namespace) == "")
	v.scaleOut(c.ScaleOut)
	if len(v.errs) > 0 {
		return Config{}, errors.Join(v.errs...)
	}
	return c, nil
}

// newConfig is the config p gives, with the table name and namespace the
// file leaves out derived from the id.
func newConfig(file, id string, p params) Config {
	c := Config{
		ID:                id,
		File:              file,
		Region:            p.Kinesis.Region,
		StreamName:        p.Kinesis.StreamName,
		AccessKeyID:       p.AWS.AccessKeyID,
		SecretAccessKey:   p.AWS.SecretAccessKey,
		MaxRecords:        p.Kinesis.MaxRecords,
		InitialPosition:   Position(p.Kinesis.InitialPosition),
		ShardSyncInterval: ms(p.Kinesis.ShardSyncIntervalMillis),
		IdleBetweenReads:  ms(p.Kinesis.IdleTimeBetweenReadsMillis),
		LeaseDuration:     ms(p.Kinesis.FailoverTimeMillis),
		LeaseRefresh:      ms(p.Kinesis.LeaseRefreshMillis),
		ParentShardPoll:   ms(p.Kinesis.ParentShardPollMillis),
		MaxInFlight:       p.Delivery.MaxInFlightPerShard,
		RetryBudget:       time.Duration(p.Delivery.RetryBudgetMillis) * time.Millisecond,
		DeadLetterStream:  deref(p.Delivery.DeadLetterStream),
		Idempotency: Idempotency{
			Enabled:      p.Delivery.Idempotency.Enabled,
			TableName:    deref(p.Delivery.Idempotency.TableName),
			Retention:    time.Duration(p.Delivery.Idempotency.RetentionDays) * 24 * time.Hour,
			ClaimTimeout: ms(p.Delivery.Idempotency.ClaimTimeoutMillis),
		},
		CloudWatch: CloudWatch{
			Enabled:       p.CloudWatch.Enabled,
			Namespace:     deref(p.CloudWatch.Namespace),
			FlushInterval: ms(p.CloudWatch.FlushIntervalMillis),
		},
		ScaleOut: ScaleOut(p.ScaleOut),
	}
	if c.Idempotency.TableName == "" {
		c.Idempotency.TableName = c.ID + "-commands"
	}
	if c.CloudWatch.Namespace == "" {
		c.CloudWatch.Namespace = c.ID
	}
	return c
}

// validation collects the problems of one config, in the order of its
// settings.
type validation struct {
	n     schemas.Normalised
	idErr error // the id's own problem: then nothing derived from it is checked
	errs  []error
}

func (v *validation) add(field, format string, args ...any) {
	v.errs = append(v.errs, v.n.FieldError(field, format, args...))
}

// kinesis checks parameters.kinesis and sets c.Timestamp.
func (v *validation) kinesis(c *Config, p params) {
	if c.MaxRecords < 1 || c.MaxRecords > 10000 {
		v.add("parameters.kinesis.maxRecords", "must be between 1 and 10000 (the GetRecords limit), got %d", c.MaxRecords)
	}
	const tsField = "parameters.kinesis.initialPositionModifiers.timestamp"
	var ts *time.Time
	if m := p.Kinesis.InitialPositionModifiers; m != nil {
		t, err := parseMillis(m.Timestamp)
		if err != nil {
			v.add(tsField, "%v", err)
		}
		ts = t
	}
	switch c.InitialPosition {
	case PositionTrimHorizon, PositionLatest:
	case PositionAtTimestamp:
		if ts == nil {
			v.add(tsField, "required when initialPosition is AT_TIMESTAMP (epoch milliseconds)")
		} else {
			c.Timestamp = *ts
			if msg := timestampProblem(c.Timestamp, time.Now()); msg != "" {
				v.add(tsField, "%s", msg)
			}
		}
	default:
		v.add("parameters.kinesis.initialPosition", "must be one of AT_TIMESTAMP, LATEST, TRIM_HORIZON, got %q", c.InitialPosition)
	}
	if c.ShardSyncInterval < 100*time.Millisecond {
		v.add("parameters.kinesis.shardSyncIntervalMillis", "must be at least 100, got %d", c.ShardSyncInterval.Milliseconds())
	}
	// Kinesis throttles polls faster than about 5 per second per shard.
	if c.IdleBetweenReads < 200*time.Millisecond {
		v.add("parameters.kinesis.idleTimeBetweenReadsMillis", "must be at least 200, got %d", c.IdleBetweenReads.Milliseconds())
	}
	if c.LeaseDuration < time.Second {
		v.add("parameters.kinesis.failoverTimeMillis", "must be at least 1000, got %d", c.LeaseDuration.Milliseconds())
	}
	if c.LeaseRefresh <= 0 || c.LeaseRefresh >= c.LeaseDuration {
		v.add("parameters.kinesis.leaseRefreshMillis", "must be positive and below failoverTimeMillis (%d), got %d", c.LeaseDuration.Milliseconds(), c.LeaseRefresh.Milliseconds())
	}
	if c.ParentShardPoll <= 0 {
		v.add("parameters.kinesis.parentShardPollMillis", "must be positive, got %d", c.ParentShardPoll.Milliseconds())
	}
}

// delivery checks parameters.delivery.
func (v *validation) delivery(c Config, p params) {
	if c.MaxInFlight < 1 || c.MaxInFlight > 10000 {
		v.add("parameters.delivery.maxInFlightPerShard", "must be between 1 and 10000, got %d", c.MaxInFlight)
	}
	if c.RetryBudget < 0 {
		v.add("parameters.delivery.retryBudgetMillis", "must not be negative, got %d", c.RetryBudget.Milliseconds())
	}
	if c.DeadLetterStream != "" {
		if !streamName.MatchString(c.DeadLetterStream) {
			v.add("parameters.delivery.deadLetterStream", "%q is not a Kinesis stream name", c.DeadLetterStream)
		} else if c.DeadLetterStream == c.StreamName {
			v.add("parameters.delivery.deadLetterStream", "must not be the observed stream %q: dead letters would be read back as commands", c.StreamName)
		}
	}
	if !c.Idempotency.Enabled {
		return
	}
	tableDerived := deref(p.Delivery.Idempotency.TableName) == ""
	switch {
	case !tableDerived && !tableName.MatchString(c.Idempotency.TableName):
		v.add("parameters.delivery.idempotency.tableName", "%q is not usable as a DynamoDB table name", c.Idempotency.TableName)
	case !tableDerived && c.Idempotency.TableName == c.ID:
		v.add("parameters.delivery.idempotency.tableName", "must differ from the observer id, which names the lease table")
	case tableDerived && v.idErr == nil && !tableName.MatchString(c.Idempotency.TableName):
		v.add("id", "%q is too long to name the idempotency table %q after it: shorten the id or set parameters.delivery.idempotency.tableName", c.ID, c.Idempotency.TableName)
	}
	if c.Idempotency.Retention < 24*time.Hour {
		v.add("parameters.delivery.idempotency.retentionDays", "must be at least 1, got %d", p.Delivery.Idempotency.RetentionDays)
	}
	if c.Idempotency.ClaimTimeout < time.Second {
		v.add("parameters.delivery.idempotency.claimTimeoutMillis", "must be at least 1000, got %d", c.Idempotency.ClaimTimeout.Milliseconds())
	}
}

// cloudWatch checks parameters.cloudwatch; namespaceDerived says the
// namespace is the id's.
func (v *validation) cloudWatch(c Config, namespaceDerived bool) {
	if !c.CloudWatch.Enabled {
		return
	}
	if c.CloudWatch.FlushInterval < time.Second {
		v.add("parameters.cloudwatch.flushIntervalMillis", "must be at least 1000, got %d", c.CloudWatch.FlushInterval.Milliseconds())
	}
	if err := metrics.ValidNamespace(c.CloudWatch.Namespace); err != nil {
		if !namespaceDerived {
			v.add("parameters.cloudwatch.namespace", "%v", err)
		} else if v.idErr == nil {
			v.add("id", "%q is not usable as the CloudWatch namespace, which defaults to the id: set parameters.cloudwatch.namespace (%v)", c.ID, err)
		}
	}
}

func (v *validation) scaleOut(s ScaleOut) {
	if s.MaxLeasesPerWorker < 0 {
		v.add("parameters.scaleOut.maxLeasesPerWorker", "must not be negative (0: no limit), got %d", s.MaxLeasesPerWorker)
	}
	if s.TakesPerPass < 1 || s.TakesPerPass > 100 {
		v.add("parameters.scaleOut.takesPerPass", "must be between 1 and 100, got %d", s.TakesPerPass)
	}
}

// clockSkew is how far ahead of this host's clock an AT_TIMESTAMP start may
// be: Kinesis refuses a timestamp ahead of its own clock, and the shards start
// moments after the config is loaded.
const clockSkew = time.Minute

// timestampProblem says why t cannot start AT_TIMESTAMP as of now, or "".
// Kinesis answers such a start with InvalidArgumentException on every try.
func timestampProblem(t, now time.Time) string {
	switch {
	case t.Before(time.UnixMilli(0)):
		return fmt.Sprintf("must not be negative, got %d", t.UnixMilli())
	case t.After(now.Add(clockSkew)):
		return fmt.Sprintf("%d (%s) is in the future, more than %v ahead of this host's clock: Kinesis refuses to start a shard at a time ahead of its own", t.UnixMilli(), t.Format(time.RFC3339), clockSkew)
	}
	return ""
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// parseMillis reads an epoch-milliseconds timestamp given as a number, a
// numeric string (Sauna's wiki form) or null.
func parseMillis(raw json.RawMessage) (*time.Time, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var n json.Number
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		n = json.Number(s)
	} else if err := json.Unmarshal(raw, &n); err != nil {
		return nil, fmt.Errorf("expected epoch milliseconds, got %s", raw)
	}
	v, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("expected epoch milliseconds, got %s", raw)
	}
	t := time.UnixMilli(v).UTC()
	return &t, nil
}
