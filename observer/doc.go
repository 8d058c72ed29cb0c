// Package observer turns a config directory into running observers and
// responders: it reads and validates each config file (Sauna's
// self-describing Avro-JSON, or plain JSON), builds the enabled responders
// into a dispatcher, runs one Kinesis observer per enabled observer config
// and one HTTP ingest endpoint (observer/ingest) per enabled
// HttpIngestConfig, keeping each file's entity independent of the others.
// Which files are configs, and how they are read, is decided by
// IsConfigFile and ReadConfigFile, for `sauna run` and `sauna validate`
// alike.
package observer
